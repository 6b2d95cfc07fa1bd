"""UAS dialogs: identity, state and in-dialog request checks.

RFC 3261 §12 (dialog id §12, UAS creation §12.1.1, in-dialog requests §12.2.1.1 and §12.2.2,
termination §12.3), §13.3.1.4 (a non-2xx final response to the initial INVITE ends an early
dialog), §15 (BYE, allowed in early and confirmed dialogs).

Theory of operation
-------------------
A dialog is a table ``{(state, input): (action, next_state)}``. The TU creates it from the
INVITE it answers (`Dialog.from_invite`, state Early) and reports what it sends
(`response_sent`) and receives (`receive_request`). Received requests are checked first: a CSeq
lower than the last one seen is out of order and gets 500 (§12.2.2; equal is allowed, since
SRCs reuse CSeq on re-INVITEs, siprec.md §14); a request to a Terminated dialog gets 481. Peer
inputs are in the table in every state, so a peer can never make the dialog raise; only our own
misuse (sending in Terminated) raises `ProtocolViolation`. `DialogSet` finds the dialog of an
in-dialog request by (Call-ID, local tag = To tag, remote tag = From tag).
"""

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeAlias

from tapeline.proto.errors import ProtocolViolation
from tapeline.proto.sip.headers import parse_name_addr
from tapeline.proto.sip.message import SipRequest, SipResponse
from tapeline.proto.sip.serializer import build_request

_PROVISIONAL_MAX: Final = 199
_SUCCESS_MAX: Final = 299
_STATUS_OUT_OF_ORDER: Final = 500
_STATUS_NO_DIALOG: Final = 481
# §12.2.1.1 target refresh requests update the remote target from their Contact.
TARGET_REFRESH_METHODS: Final = frozenset({"INVITE", "UPDATE"})


class DialogState(enum.Enum):
    """Dialog states (RFC 3261 §12)."""

    EARLY = enum.auto()
    CONFIRMED = enum.auto()
    TERMINATED = enum.auto()


class DialogInput(enum.Enum):
    """What happens to a dialog: responses we send, requests we receive, a BYE we send."""

    SEND_1XX = enum.auto()
    SEND_2XX = enum.auto()
    SEND_FAILURE = enum.auto()
    RECEIVE_REQUEST = enum.auto()
    RECEIVE_ACK = enum.auto()
    RECEIVE_BYE = enum.auto()
    SEND_BYE = enum.auto()


class DialogAction(enum.Enum):
    """What a dialog table entry does."""

    ACCEPT = enum.auto()
    CHECK_CSEQ = enum.auto()
    IGNORE = enum.auto()
    NO_DIALOG = enum.auto()


_S = DialogState
_I = DialogInput
_A = DialogAction

DIALOG_TABLE: Final[Mapping[tuple[DialogState, DialogInput], tuple[DialogAction, DialogState]]] = (
    MappingProxyType(
        {
            (_S.EARLY, _I.SEND_1XX): (_A.ACCEPT, _S.EARLY),
            (_S.EARLY, _I.SEND_2XX): (_A.ACCEPT, _S.CONFIRMED),
            (_S.EARLY, _I.SEND_FAILURE): (_A.ACCEPT, _S.TERMINATED),
            (_S.EARLY, _I.RECEIVE_REQUEST): (_A.CHECK_CSEQ, _S.EARLY),
            (_S.EARLY, _I.RECEIVE_ACK): (_A.IGNORE, _S.EARLY),
            (_S.EARLY, _I.RECEIVE_BYE): (_A.CHECK_CSEQ, _S.TERMINATED),
            (_S.CONFIRMED, _I.SEND_1XX): (_A.ACCEPT, _S.CONFIRMED),
            (_S.CONFIRMED, _I.SEND_2XX): (_A.ACCEPT, _S.CONFIRMED),
            (_S.CONFIRMED, _I.SEND_FAILURE): (_A.ACCEPT, _S.CONFIRMED),
            (_S.CONFIRMED, _I.RECEIVE_REQUEST): (_A.CHECK_CSEQ, _S.CONFIRMED),
            (_S.CONFIRMED, _I.RECEIVE_ACK): (_A.ACCEPT, _S.CONFIRMED),
            (_S.CONFIRMED, _I.RECEIVE_BYE): (_A.CHECK_CSEQ, _S.TERMINATED),
            (_S.CONFIRMED, _I.SEND_BYE): (_A.ACCEPT, _S.TERMINATED),
            (_S.TERMINATED, _I.RECEIVE_REQUEST): (_A.NO_DIALOG, _S.TERMINATED),
            (_S.TERMINATED, _I.RECEIVE_ACK): (_A.IGNORE, _S.TERMINATED),
            (_S.TERMINATED, _I.RECEIVE_BYE): (_A.NO_DIALOG, _S.TERMINATED),
        }
    )
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogId:
    """Dialog identifier (RFC 3261 §12): Call-ID, our tag and the peer's tag."""

    call_id: str
    local_tag: str
    remote_tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """The answer a received in-dialog request must get instead of reaching the TU."""

    status_code: int
    reason: str


HeaderList: TypeAlias = Sequence[tuple[str, str]]


class Dialog:
    """One UAS dialog; build it with `Dialog.from_invite`.

    Attributes:
        id: the dialog id.
        local_party: our From/To value, with our tag.
        remote_party: the peer's From/To value, with its tag.
        remote_target: the URI requests are sent to (the peer's Contact).
        route_set: Record-Route values, in the order requests use them as Route (§12.1.1).
        remote_cseq: the highest CSeq number received.
        local_cseq: the CSeq number of the last request we sent (0 before the first).
    """

    def __init__(self, invite: SipRequest, *, local_tag: str) -> None:
        remote = invite.from_addr
        self.id = DialogId(call_id=invite.call_id, local_tag=local_tag, remote_tag=remote.tag or "")
        self.local_party = f"{invite.headers.get('To')};tag={local_tag}"
        self.remote_party = invite.headers.get("From") or ""
        self.remote_target = _contact_uri(invite) or remote.uri
        self.route_set = invite.headers.get_list("Record-Route")
        self.remote_cseq = invite.cseq.number
        self.local_cseq = 0
        self._state = DialogState.EARLY

    @classmethod
    def from_invite(cls, invite: SipRequest, *, local_tag: str) -> "Dialog":
        """Create the dialog an INVITE opens once we answer it with `local_tag` (§12.1.1)."""
        return cls(invite, local_tag=local_tag)

    @property
    def state(self) -> DialogState:
        """The current state."""
        return self._state

    def handle(self, event: DialogInput, *, cseq: int | None = None) -> Reject | None:
        """Apply one input through the table.

        Args:
            event: the input.
            cseq: the CSeq number of a received request (for CHECK_CSEQ entries).

        Returns:
            A `Reject` when the request must be refused, else None.

        Raises:
            ProtocolViolation: `(state, event)` is not in the table; the dialog terminates.
        """
        entry = DIALOG_TABLE.get((self._state, event))
        if entry is None:
            state = self._state
            self._state = DialogState.TERMINATED
            raise ProtocolViolation(f"{event.name} is not allowed in dialog state {state.name}")
        action, next_state = entry
        if action is DialogAction.NO_DIALOG:
            return Reject(status_code=_STATUS_NO_DIALOG, reason="Call/Transaction Does Not Exist")
        if action is DialogAction.CHECK_CSEQ and cseq is not None:
            if cseq < self.remote_cseq:
                return Reject(status_code=_STATUS_OUT_OF_ORDER, reason="CSeq Out Of Order")
            self.remote_cseq = cseq
        self._state = next_state
        return None

    def receive_request(self, request: SipRequest) -> Reject | None:
        """Check and account for an in-dialog request from the peer (§12.2.2).

        Returns:
            None when the TU should process the request, else the response to send instead.
        """
        if request.method == "ACK":
            return self.handle(DialogInput.RECEIVE_ACK)
        event = DialogInput.RECEIVE_BYE if request.method == "BYE" else DialogInput.RECEIVE_REQUEST
        reject = self.handle(event, cseq=request.cseq.number)
        if reject is None and request.method in TARGET_REFRESH_METHODS:
            self.remote_target = _contact_uri(request) or self.remote_target
        return reject

    def response_sent(self, response: SipResponse) -> None:
        """Account for a response we sent in this dialog (a failure ends an Early dialog).

        Raises:
            ProtocolViolation: the dialog is Terminated.
        """
        if response.status_code <= _PROVISIONAL_MAX:
            self.handle(DialogInput.SEND_1XX)
        elif response.status_code <= _SUCCESS_MAX:
            self.handle(DialogInput.SEND_2XX)
        else:
            self.handle(DialogInput.SEND_FAILURE)

    def create_request(  # noqa: PLR0913  # the parts of an in-dialog request
        self,
        method: str,
        *,
        via: str,
        contact: str | None = None,
        headers: HeaderList = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipRequest:
        """Build an in-dialog request (§12.2.1.1), e.g. BYE or a snapshot-request UPDATE.

        Sending BYE moves the dialog to Terminated.

        Raises:
            ProtocolViolation: BYE from a dialog that is not Confirmed.
        """
        if method == "BYE":
            self.handle(DialogInput.SEND_BYE)
        self.local_cseq += 1
        return build_request(
            method,
            self.remote_target,
            via=via,
            from_=self.local_party,
            to=self.remote_party,
            call_id=self.id.call_id,
            cseq=self.local_cseq,
            contact=contact,
            headers=[*(("Route", route) for route in self.route_set), *headers],
            body=body,
            content_type=content_type,
        )


def _contact_uri(request: SipRequest) -> str | None:
    contacts = request.headers.get_list("Contact")
    return parse_name_addr(contacts[0]).uri if contacts else None


class DialogSet:
    """The live dialogs of one UAS, found by id."""

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def add(self, dialog: Dialog) -> None:
        """Start tracking `dialog`."""
        self._dialogs[dialog.id] = dialog

    def match(self, request: SipRequest) -> Dialog | None:
        """Return the dialog of an in-dialog request (To tag is ours), None when unknown."""
        local_tag = request.to_addr.tag
        if local_tag is None:
            return None
        key = DialogId(
            call_id=request.call_id, local_tag=local_tag, remote_tag=request.from_addr.tag or ""
        )
        return self._dialogs.get(key)

    def remove_terminated(self) -> list[Dialog]:
        """Forget and return every Terminated dialog."""
        done = [d for d in self._dialogs.values() if d.state is DialogState.TERMINATED]
        for dialog in done:
            del self._dialogs[dialog.id]
        return done
