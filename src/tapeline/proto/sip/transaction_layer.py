"""The UAS transaction layer: matching requests to server transactions.

RFC 3261 §17.2.3 (matching by branch, sent-by and method; ACK matches its INVITE), §9.2 (CANCEL:
200 to the CANCEL, 487 to the INVITE if still pending, 481 when nothing matches), §13.3.1.4 and
RFC 6026 §7.1 (an ACK for a 2xx carries a new branch and belongs to the dialog), §8.2.6.1 and
§17.2.1 (a 100 Trying for every new INVITE).

Strategy: the layer owns the live transactions, keyed by `TransactionKey`, and turns a parsed
request into outputs: bytes to send (`SendBytes`) and events for the transaction user
(`RequestReceived`, `AckReceived`, `InviteCancelled`, `TransactionTimedOut`). The TU answers a
`RequestReceived` with `send_response(key, response, now=...)`. Terminated transactions are
dropped after every call. Responses (to requests we originate) are not handled here.
"""

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from tapeline.proto.errors import ProtocolViolation
from tapeline.proto.sip.message import SipRequest, SipResponse
from tapeline.proto.sip.serializer import build_response
from tapeline.proto.sip.transaction import (
    DEFAULT_TIMERS,
    Address,
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    TimerConfig,
    TransactionKey,
    TxInput,
    TxOutput,
    TxState,
    transaction_key,
)

_STATUS_TRYING: Final = 100
_STATUS_OK: Final = 200
_STATUS_NO_TRANSACTION: Final = 481
_STATUS_TERMINATED: Final = 487
_TAG_BYTES: Final = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A new request for the TU; answer it with `TransactionLayer.send_response(key, ...)`."""

    request: SipRequest
    key: TransactionKey
    addr: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class AckReceived:
    """An ACK for a 2xx (or one matching no transaction): it belongs to the dialog."""

    request: SipRequest
    addr: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteCancelled:
    """A CANCEL matched a pending INVITE; 200 and 487 were already sent. Release its resources."""

    key: TransactionKey
    cancel: SipRequest


LayerOutput: TypeAlias = TxOutput | RequestReceived | AckReceived | InviteCancelled


def random_tag() -> str:
    """Return a fresh To-tag with 64 bits of randomness (RFC 3261 §19.3)."""
    return secrets.token_hex(_TAG_BYTES)


class TransactionLayer:
    """Server transactions of one SIP listener.

    Args:
        timers: T1, T2, T4.
        make_tag: the To-tag source for the 487 sent on CANCEL when no tag was sent yet.
    """

    def __init__(
        self,
        *,
        timers: TimerConfig = DEFAULT_TIMERS,
        make_tag: Callable[[], str] = random_tag,
    ) -> None:
        self._timers = timers
        self._make_tag = make_tag
        self._transactions: dict[TransactionKey, ServerTransaction] = {}

    def transaction(self, key: TransactionKey) -> ServerTransaction | None:
        """Return the live transaction with `key`, None when there is none."""
        return self._transactions.get(key)

    def __len__(self) -> int:
        return len(self._transactions)

    def receive_request(
        self, request: SipRequest, *, addr: Address, reliable: bool, now: float
    ) -> list[LayerOutput]:
        """Match a parsed request to a transaction or start one.

        Args:
            request: the request (from `parse_datagram` or `SipFramer`).
            addr: the transport source; responses are sent there.
            reliable: True for TCP/TLS.
            now: the current time.

        Returns:
            Bytes to send and events for the TU, in order.
        """
        key = transaction_key(request)
        existing = self._transactions.get(key)
        outputs: list[LayerOutput] = []
        if request.method == "ACK":
            outputs.extend(self._ack(request, existing, addr, now))
        elif existing is not None:
            outputs.extend(existing.receive_request(request, now=now))
        elif request.method == "CANCEL":
            outputs.extend(self._cancel(request, addr, reliable=reliable, now=now))
        elif request.method == "INVITE":
            tx = self._start(InviteServerTransaction, request, addr, reliable=reliable)
            outputs.extend(
                tx.send_response(build_response(request, _STATUS_TRYING, source=addr), now=now)
            )
            outputs.append(RequestReceived(request=request, key=key, addr=addr))
        else:
            self._start(NonInviteServerTransaction, request, addr, reliable=reliable)
            outputs.append(RequestReceived(request=request, key=key, addr=addr))
        self._collect()
        return outputs

    def send_response(
        self, key: TransactionKey, response: SipResponse, *, now: float
    ) -> list[LayerOutput]:
        """Send the TU's response through transaction `key`.

        Raises:
            ProtocolViolation: no such transaction, or its state forbids the response.
        """
        tx = self._transactions.get(key)
        if tx is None:
            raise ProtocolViolation("no live transaction for this response")
        outputs: list[LayerOutput] = list(tx.send_response(response, now=now))
        self._collect()
        return outputs

    def get_timer(self) -> float | None:
        """Return the earliest timer deadline over all transactions, None when idle."""
        deadlines = [t for tx in self._transactions.values() if (t := tx.get_timer()) is not None]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> list[LayerOutput]:
        """Fire every due timer of every transaction."""
        outputs: list[LayerOutput] = []
        for tx in list(self._transactions.values()):
            outputs.extend(tx.handle_timer(now))
        self._collect()
        return outputs

    def _start(
        self,
        kind: type[ServerTransaction],
        request: SipRequest,
        addr: Address,
        *,
        reliable: bool,
    ) -> ServerTransaction:
        tx = kind(request, addr=addr, reliable=reliable, timers=self._timers)
        self._transactions[tx.key] = tx
        return tx

    def _ack(
        self,
        ack: SipRequest,
        existing: ServerTransaction | None,
        addr: Address,
        now: float,
    ) -> list[LayerOutput]:
        if existing is not None and existing.state is TxState.PROCEEDING:
            return []  # an ACK before any final response acknowledges nothing: drop it
        if existing is not None and existing.state is not TxState.ACCEPTED:
            # ACK for a non-2xx final response: the transaction absorbs it (§17.2.1).
            return list(existing.handle(TxInput.ACK, now=now))
        if existing is not None:
            existing.handle(TxInput.ACK_2XX, now=now)
        else:
            # A 2xx ACK has its own branch: find the INVITE by Call-ID and CSeq. SRCs reuse
            # CSeq on re-INVITEs, so every Accepted match is told; a repeat is harmless.
            for tx in list(self._transactions.values()):
                if (
                    tx.state is TxState.ACCEPTED
                    and tx.request.call_id == ack.call_id
                    and tx.request.cseq.number == ack.cseq.number
                ):
                    tx.handle(TxInput.ACK_2XX, now=now)
        return [AckReceived(request=ack, addr=addr)]

    def _cancel(
        self,
        cancel: SipRequest,
        addr: Address,
        *,
        reliable: bool,
        now: float,
    ) -> list[LayerOutput]:
        tx = self._start(NonInviteServerTransaction, cancel, addr, reliable=reliable)
        invite_key = TransactionKey(branch=tx.key.branch, sent_by=tx.key.sent_by, method="INVITE")
        invite = self._transactions.get(invite_key)
        if invite is None:
            return list(
                tx.send_response(
                    build_response(cancel, _STATUS_NO_TRANSACTION, source=addr), now=now
                )
            )
        tag = _sent_tag(invite.last_response) or self._make_tag()
        outputs: list[LayerOutput] = list(
            tx.send_response(build_response(cancel, _STATUS_OK, to_tag=tag, source=addr), now=now)
        )
        if invite.state is TxState.PROCEEDING:
            terminated = build_response(
                invite.request, _STATUS_TERMINATED, to_tag=tag, source=invite.addr
            )
            outputs.extend(invite.send_response(terminated, now=now))
            outputs.append(InviteCancelled(key=invite_key, cancel=cancel))
        return outputs

    def _collect(self) -> None:
        for key in [k for k, tx in self._transactions.items() if tx.state is TxState.TERMINATED]:
            del self._transactions[key]


def _sent_tag(response: SipResponse | None) -> str | None:
    return None if response is None else response.to_addr.tag
