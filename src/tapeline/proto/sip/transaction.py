"""UAS server transactions as explicit state tables.

RFC 3261 §17.2.1 (INVITE server transaction, Figure 7), §17.2.2 (non-INVITE server transaction,
Figure 8), §17.2.3 (matching requests to server transactions), §17.1.1.2/§17.2.1 timers, as
amended by RFC 6026 §7.1 (the Accepted state that absorbs INVITE retransmissions after a 2xx).

Theory of operation
-------------------
A transaction is a table ``{(state, input): (action, next_state)}``. Inputs are: the request
arriving again (a retransmission), an ACK, the TU sending a response (classed 1xx, 2xx or other
final), and timers firing. A pair missing from the table raises `ProtocolViolation` and leaves the
transaction Terminated. Entering a state arms that state's timers; `get_timer()` reports the
earliest deadline and `handle_timer(now)` feeds every due timer back in as an input.

1. INVITE: Proceeding on creation. A 1xx keeps it there; a 300-699 moves to Completed, where
   Timer G retransmits the response over unreliable transports (T1 doubling up to T2) until
   the ACK arrives (Confirmed, then Timer I: T4, 0 on reliable transports) or Timer H (64*T1)
   gives up and reports `TransactionTimedOut`.
2. INVITE 2xx: RFC 6026 Accepted. The UAS core must retransmit the 2xx until the ACK arrives
   (§13.3.1.4), on every transport, because the 2xx is end to end. Tapeline folds that duty
   into the Accepted state: Timer G resends the 2xx, the ACK for the 2xx (which carries a new
   branch and so reaches us through the dialog, input ACK_2XX) stops it, and Timer L (64*T1)
   terminates, reporting `TransactionTimedOut` if no ACK came, so the TU can send BYE.
3. Non-INVITE: Trying, Proceeding after a 1xx, Completed after a final response, where Timer J
   (64*T1, 0 on reliable transports) absorbs retransmissions before terminating.
4. A retransmitted request resends the last response, except in Trying (nothing to resend yet),
   Confirmed and Accepted (RFC 6026: absorbed; the 2xx retransmission is timer driven).
"""

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import ClassVar, Final, TypeAlias

from tapeline.proto.errors import ProtocolViolation
from tapeline.proto.sip.grammar import MAGIC_COOKIE
from tapeline.proto.sip.message import SipRequest, SipResponse
from tapeline.proto.sip.serializer import serialize

Address: TypeAlias = tuple[str, int]

_PROVISIONAL_MAX: Final = 199
_SUCCESS_MAX: Final = 299
_TIMEOUT_MULTIPLIER: Final = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerConfig:
    """RFC 3261 §17.1.1.1 timer base values, in seconds (Table 4)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


DEFAULT_TIMERS: Final = TimerConfig()


class TxState(enum.Enum):
    """Server transaction states (RFC 3261 Figures 7 and 8; Accepted from RFC 6026 §7.1)."""

    TRYING = enum.auto()
    PROCEEDING = enum.auto()
    COMPLETED = enum.auto()
    CONFIRMED = enum.auto()
    ACCEPTED = enum.auto()
    TERMINATED = enum.auto()


class TxInput(enum.Enum):
    """Transaction inputs: requests from the transport, responses from the TU, timers (§17.2)."""

    REQUEST = enum.auto()
    ACK = enum.auto()
    ACK_2XX = enum.auto()
    SEND_1XX = enum.auto()
    SEND_2XX = enum.auto()
    SEND_FINAL = enum.auto()
    TIMER_G = enum.auto()
    TIMER_H = enum.auto()
    TIMER_I = enum.auto()
    TIMER_J = enum.auto()
    TIMER_L = enum.auto()


class TxAction(enum.Enum):
    """What a table entry does before moving to its next state."""

    SEND = enum.auto()
    RESEND = enum.auto()
    ABSORB = enum.auto()
    RETRANSMIT = enum.auto()
    STOP_RETRANSMIT = enum.auto()
    TIME_OUT = enum.auto()
    EXPIRE = enum.auto()


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionKey:
    """The server transaction id (RFC 3261 §17.2.3): branch, sent-by and method.

    ACK is keyed as INVITE so it finds the INVITE transaction it acknowledges. For branches
    without the magic cookie (RFC 2543 peers) `branch` is built from Call-ID, From tag and
    CSeq number, a simplification of the §17.2.3 fallback rules.
    """

    branch: str
    sent_by: str
    method: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SendBytes:
    """Output: send `data` to `addr` (the request's source; RFC 3581 style for UDP)."""

    data: bytes
    addr: Address
    message: SipResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimedOut:
    """Output: a timer gave up (H: no ACK for a non-2xx; L: no ACK for a 2xx, send BYE)."""

    key: TransactionKey
    timer: TxInput


TxOutput: TypeAlias = SendBytes | TransactionTimedOut
Table: TypeAlias = Mapping[tuple[TxState, TxInput], tuple[TxAction, TxState]]

_S = TxState
_I = TxInput
_A = TxAction

INVITE_TABLE: Final[Table] = MappingProxyType(
    {
        (_S.PROCEEDING, _I.REQUEST): (_A.RESEND, _S.PROCEEDING),
        (_S.PROCEEDING, _I.SEND_1XX): (_A.SEND, _S.PROCEEDING),
        (_S.PROCEEDING, _I.SEND_2XX): (_A.SEND, _S.ACCEPTED),
        (_S.PROCEEDING, _I.SEND_FINAL): (_A.SEND, _S.COMPLETED),
        (_S.COMPLETED, _I.REQUEST): (_A.RESEND, _S.COMPLETED),
        (_S.COMPLETED, _I.ACK): (_A.ABSORB, _S.CONFIRMED),
        (_S.COMPLETED, _I.TIMER_G): (_A.RETRANSMIT, _S.COMPLETED),
        (_S.COMPLETED, _I.TIMER_H): (_A.TIME_OUT, _S.TERMINATED),
        (_S.CONFIRMED, _I.REQUEST): (_A.ABSORB, _S.CONFIRMED),
        (_S.CONFIRMED, _I.ACK): (_A.ABSORB, _S.CONFIRMED),
        (_S.CONFIRMED, _I.TIMER_I): (_A.ABSORB, _S.TERMINATED),
        (_S.ACCEPTED, _I.REQUEST): (_A.ABSORB, _S.ACCEPTED),
        (_S.ACCEPTED, _I.ACK): (_A.STOP_RETRANSMIT, _S.ACCEPTED),
        (_S.ACCEPTED, _I.ACK_2XX): (_A.STOP_RETRANSMIT, _S.ACCEPTED),
        (_S.ACCEPTED, _I.SEND_2XX): (_A.SEND, _S.ACCEPTED),
        (_S.ACCEPTED, _I.TIMER_G): (_A.RETRANSMIT, _S.ACCEPTED),
        (_S.ACCEPTED, _I.TIMER_L): (_A.EXPIRE, _S.TERMINATED),
    }
)

NON_INVITE_TABLE: Final[Table] = MappingProxyType(
    {
        (_S.TRYING, _I.REQUEST): (_A.ABSORB, _S.TRYING),
        (_S.TRYING, _I.SEND_1XX): (_A.SEND, _S.PROCEEDING),
        (_S.TRYING, _I.SEND_FINAL): (_A.SEND, _S.COMPLETED),
        (_S.PROCEEDING, _I.REQUEST): (_A.RESEND, _S.PROCEEDING),
        (_S.PROCEEDING, _I.SEND_1XX): (_A.SEND, _S.PROCEEDING),
        (_S.PROCEEDING, _I.SEND_FINAL): (_A.SEND, _S.COMPLETED),
        (_S.COMPLETED, _I.REQUEST): (_A.RESEND, _S.COMPLETED),
        (_S.COMPLETED, _I.TIMER_J): (_A.ABSORB, _S.TERMINATED),
    }
)


def transaction_key(request: SipRequest) -> TransactionKey:
    """Return the key that matches `request` to its server transaction (§17.2.3)."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if not branch.startswith(MAGIC_COOKIE):
        tag = request.from_addr.tag or ""
        branch = f"rfc2543|{request.call_id}|{tag}|{request.cseq.number}|{branch}"
    return TransactionKey(branch=branch, sent_by=via.sent_by.lower(), method=method)


class ServerTransaction(abc.ABC):
    """Common machinery of the two server transactions; see the module's theory of operation.

    Args:
        request: the request that created the transaction.
        addr: where responses go.
        reliable: True for TCP/TLS (Timers G, I and J collapse as §17.2 says).
        timers: T1, T2, T4.
    """

    table: ClassVar[Table]
    initial_state: ClassVar[TxState]

    def __init__(
        self,
        request: SipRequest,
        *,
        addr: Address,
        reliable: bool,
        timers: TimerConfig = DEFAULT_TIMERS,
    ) -> None:
        self.request = request
        self.key = transaction_key(request)
        self._addr = addr
        self._reliable = reliable
        self._t = timers
        self._state = self.initial_state
        self._last: SipResponse | None = None
        self._timers: dict[TxInput, float] = {}
        self._interval = timers.t1
        self._acked = False

    @property
    def state(self) -> TxState:
        """The current state."""
        return self._state

    @property
    def addr(self) -> Address:
        """Where the transaction's responses go: the request's transport source."""
        return self._addr

    @property
    def last_response(self) -> SipResponse | None:
        """The last response sent, None before the first."""
        return self._last

    def send_response(self, response: SipResponse, *, now: float) -> list[TxOutput]:
        """Send a response from the TU through the transaction.

        Raises:
            ProtocolViolation: the state does not allow this response class.
        """
        return self.handle(self._classify(response), now=now, response=response)

    def receive_request(self, request: SipRequest, *, now: float) -> list[TxOutput]:
        """Feed a request that matched this transaction (a retransmission or an ACK)."""
        del request  # matched by key; the original is kept for building responses
        return self.handle(TxInput.REQUEST, now=now)

    def get_timer(self) -> float | None:
        """Return the earliest armed timer deadline, None when no timer is armed."""
        return min(self._timers.values(), default=None)

    def handle_timer(self, now: float) -> list[TxOutput]:
        """Fire every timer due at `now`, earliest first."""
        outputs: list[TxOutput] = []
        while self._timers:
            timer, deadline = min(self._timers.items(), key=lambda item: item[1])
            if deadline > now:
                break
            del self._timers[timer]
            outputs.extend(self.handle(timer, now=now))
        return outputs

    def handle(
        self, event: TxInput, *, now: float, response: SipResponse | None = None
    ) -> list[TxOutput]:
        """Apply one input through the table.

        Args:
            event: the input.
            now: the current time.
            response: the response to send, for the SEND_* inputs.

        Returns:
            The outputs, in order.

        Raises:
            ProtocolViolation: `(state, event)` is not in the table, or a SEND_* input came
                without a response. The transaction is then Terminated.
        """
        entry = self.table.get((self._state, event))
        if entry is None:
            state = self._state
            self._enter(TxState.TERMINATED, now)
            raise ProtocolViolation(f"{event.name} is not allowed in state {state.name}")
        action, next_state = entry
        outputs = self._perform(action, event, response, now)
        if next_state is not self._state:
            outputs.extend(self._enter(next_state, now))
        return outputs

    def _perform(
        self, action: TxAction, event: TxInput, response: SipResponse | None, now: float
    ) -> list[TxOutput]:
        if action is TxAction.SEND:
            if response is None:
                self._enter(TxState.TERMINATED, now)
                raise ProtocolViolation(f"{event.name} needs a response")
            if not response.raw:
                response = replace(response, raw=serialize(response))
            self._last = response
            return [SendBytes(data=response.raw, addr=self._addr, message=response)]
        if action is TxAction.RETRANSMIT:
            self._interval = min(self._interval * 2, self._t.t2)
            self._timers[TxInput.TIMER_G] = now + self._interval
            return self._resend()
        if action is TxAction.RESEND:
            return self._resend()
        if action is TxAction.STOP_RETRANSMIT:
            self._acked = True
            self._timers.pop(TxInput.TIMER_G, None)
        elif action is TxAction.TIME_OUT or (action is TxAction.EXPIRE and not self._acked):
            return [TransactionTimedOut(key=self.key, timer=event)]
        return []

    def _resend(self) -> list[TxOutput]:
        if self._last is None:
            return []
        return [SendBytes(data=self._last.raw, addr=self._addr, message=self._last)]

    def _enter(self, state: TxState, now: float) -> list[TxOutput]:
        self._state = state
        self._timers = {timer: now + delay for timer, delay in self._timers_for(state).items()}
        self._interval = self._t.t1
        outputs: list[TxOutput] = []
        for timer, delay in self._timers_for(state).items():
            if delay == 0:
                # A zero timer (I or J on a reliable transport) fires on entry.
                del self._timers[timer]
                outputs.extend(self.handle(timer, now=now))
        return outputs

    @abc.abstractmethod
    def _timers_for(self, state: TxState) -> dict[TxInput, float]:
        """Return the timers armed on entering `state`, as delays from now."""

    @abc.abstractmethod
    def _classify(self, response: SipResponse) -> TxInput:
        """Return the SEND_* input a response from the TU is."""


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 INVITE server transaction with the RFC 6026 Accepted state."""

    table = INVITE_TABLE
    initial_state = TxState.PROCEEDING

    def _timers_for(self, state: TxState) -> dict[TxInput, float]:
        t = self._t
        if state is TxState.COMPLETED:
            timers = {TxInput.TIMER_H: _TIMEOUT_MULTIPLIER * t.t1}
            if not self._reliable:
                timers[TxInput.TIMER_G] = t.t1
            return timers
        if state is TxState.CONFIRMED:
            return {TxInput.TIMER_I: 0.0 if self._reliable else t.t4}
        if state is TxState.ACCEPTED:
            return {TxInput.TIMER_G: t.t1, TxInput.TIMER_L: _TIMEOUT_MULTIPLIER * t.t1}
        return {}

    def _classify(self, response: SipResponse) -> TxInput:
        if response.status_code <= _PROVISIONAL_MAX:
            return TxInput.SEND_1XX
        if response.status_code <= _SUCCESS_MAX:
            return TxInput.SEND_2XX
        return TxInput.SEND_FINAL


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.2 non-INVITE server transaction."""

    table = NON_INVITE_TABLE
    initial_state = TxState.TRYING

    def _timers_for(self, state: TxState) -> dict[TxInput, float]:
        if state is TxState.COMPLETED:
            return {TxInput.TIMER_J: 0.0 if self._reliable else _TIMEOUT_MULTIPLIER * self._t.t1}
        return {}

    def _classify(self, response: SipResponse) -> TxInput:
        if response.status_code <= _PROVISIONAL_MAX:
            return TxInput.SEND_1XX
        return TxInput.SEND_FINAL
