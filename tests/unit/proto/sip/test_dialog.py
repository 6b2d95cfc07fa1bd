import itertools

import pytest

from tapeline.proto.errors import ProtocolViolation
from tapeline.proto.sip.dialog import (
    DIALOG_TABLE,
    Dialog,
    DialogAction,
    DialogId,
    DialogInput,
    DialogSet,
    DialogState,
    Reject,
)
from tapeline.proto.sip.message import SipRequest
from tapeline.proto.sip.parser import parse_datagram
from tapeline.proto.sip.serializer import build_response
from tests.unit.proto.sip.samples import request, siprec_invite

CALL_ID = "d253c800-b0d1ea39-4a7dd-3f0e20a"
SRC_TAG = "35e195d2-947d-4585-946f-09839247"


def parsed(data: bytes) -> SipRequest:
    message = parse_datagram(data)
    assert isinstance(message, SipRequest)
    return message


INVITE = parsed(siprec_invite())


def in_dialog(method: str, cseq: int, *, contact: str = "<sip:2000@src.example.com>") -> SipRequest:
    data = request(method, cseq=cseq, to_tag="srs", call_id=CALL_ID)
    data = data.replace(
        b"From: Alice <sip:alice@example.com>;tag=1928301774",
        b"From: <sip:2000@example.com>;tag=" + SRC_TAG.encode(),
    )
    data = data.replace(b"<sip:alice@pc33.example.com>", contact.encode())
    return parsed(data)


def state_of(dialog: Dialog) -> DialogState:
    """Read the state through a call, so mypy does not narrow it across transitions."""
    return dialog.state


def confirmed() -> Dialog:
    dialog = Dialog.from_invite(INVITE, local_tag="srs")
    dialog.response_sent(build_response(INVITE, 200, to_tag="srs"))
    return dialog


def dialog_in(state: DialogState) -> Dialog:
    dialog = Dialog.from_invite(INVITE, local_tag="srs")
    if state is DialogState.CONFIRMED:
        dialog.handle(DialogInput.SEND_2XX)
    elif state is DialogState.TERMINATED:
        dialog.handle(DialogInput.SEND_FAILURE)
    return dialog


def test_dialog_from_siprec_invite() -> None:
    dialog = Dialog.from_invite(INVITE, local_tag="srs")
    assert dialog.id == DialogId(call_id=CALL_ID, local_tag="srs", remote_tag=SRC_TAG)
    assert dialog.state is DialogState.EARLY
    assert dialog.remote_target == "sip:2000@src.example.com"
    assert dialog.route_set == ("<sip:proxy.example.com;lr>",)
    assert dialog.remote_cseq == 101
    assert dialog.local_party == "<sip:recorder@example.com>;tag=srs"


@pytest.mark.parametrize(("state", "event"), list(itertools.product(DialogState, DialogInput)))
def test_dialog_table_every_pair(state: DialogState, event: DialogInput) -> None:
    dialog = dialog_in(state)
    entry = DIALOG_TABLE.get((state, event))
    if entry is None:
        with pytest.raises(ProtocolViolation, match=rf"^{event.name} is not allowed in dialog"):
            dialog.handle(event, cseq=200)
        assert state_of(dialog) is DialogState.TERMINATED
        return
    action, next_state = entry
    result = dialog.handle(event, cseq=200)
    if action is DialogAction.NO_DIALOG:
        assert result == Reject(status_code=481, reason="Call/Transaction Does Not Exist")
    else:
        assert result is None
    assert state_of(dialog) is next_state


def test_every_peer_input_is_in_the_table_in_every_state() -> None:
    peer_inputs = {DialogInput.RECEIVE_REQUEST, DialogInput.RECEIVE_ACK, DialogInput.RECEIVE_BYE}
    for state, event in itertools.product(DialogState, peer_inputs):
        assert (state, event) in DIALOG_TABLE


def test_lower_cseq_is_rejected_with_500_and_equal_is_accepted() -> None:
    dialog = confirmed()
    assert dialog.receive_request(in_dialog("UPDATE", 100)) == Reject(
        status_code=500, reason="CSeq Out Of Order"
    )
    assert dialog.receive_request(in_dialog("INVITE", 101)) is None
    assert dialog.receive_request(in_dialog("INFO", 102)) is None
    assert dialog.remote_cseq == 102
    assert dialog.receive_request(in_dialog("ACK", 1)) is None


def test_target_refresh_updates_remote_target() -> None:
    dialog = confirmed()
    dialog.receive_request(in_dialog("INFO", 102, contact="<sip:other@10.0.0.1>"))
    assert dialog.remote_target == "sip:2000@src.example.com"
    dialog.receive_request(in_dialog("INVITE", 103, contact="<sip:moved@10.0.0.2>"))
    assert dialog.remote_target == "sip:moved@10.0.0.2"


def test_bye_terminates_and_later_requests_get_481() -> None:
    dialog = confirmed()
    assert dialog.receive_request(in_dialog("BYE", 102)) is None
    assert state_of(dialog) is DialogState.TERMINATED
    reject = dialog.receive_request(in_dialog("INFO", 103))
    assert reject is not None
    assert reject.status_code == 481


def test_failure_to_initial_invite_ends_early_dialog_but_not_confirmed_one() -> None:
    early = Dialog.from_invite(INVITE, local_tag="srs")
    early.response_sent(build_response(INVITE, 180, to_tag="srs"))
    assert state_of(early) is DialogState.EARLY
    early.response_sent(build_response(INVITE, 488, to_tag="srs"))
    assert state_of(early) is DialogState.TERMINATED
    dialog = confirmed()
    dialog.response_sent(build_response(INVITE, 491, to_tag="srs"))
    assert state_of(dialog) is DialogState.CONFIRMED


def test_create_bye_uses_route_set_remote_target_and_increments_cseq() -> None:
    dialog = confirmed()
    update = dialog.create_request("UPDATE", via="SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1")
    bye = dialog.create_request(
        "BYE", via="SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK2", contact="<sip:srs@192.0.2.9>"
    )
    assert (update.cseq.number, bye.cseq.number) == (1, 2)
    assert bye.uri == "sip:2000@src.example.com"
    assert bye.headers.get_all("Route") == ("<sip:proxy.example.com;lr>",)
    assert bye.from_addr.tag == "srs"
    assert bye.to_addr.tag == SRC_TAG
    assert bye.call_id == CALL_ID
    assert parse_datagram(bye.raw) == bye
    assert state_of(dialog) is DialogState.TERMINATED


def test_bye_from_early_dialog_is_refused() -> None:
    dialog = Dialog.from_invite(INVITE, local_tag="srs")
    with pytest.raises(ProtocolViolation, match=r"^SEND_BYE is not allowed in dialog state EARLY$"):
        dialog.create_request("BYE", via="SIP/2.0/UDP h;branch=z9hG4bK3")


def test_dialog_set_matches_by_call_id_and_tags() -> None:
    dialogs = DialogSet()
    dialog = confirmed()
    dialogs.add(dialog)
    assert len(dialogs) == 1
    assert dialogs.match(in_dialog("BYE", 102)) is dialog
    assert dialogs.match(INVITE) is None
    other = parsed(request("BYE", to_tag="srs", call_id="other"))
    assert dialogs.match(other) is None
    assert dialogs.remove_terminated() == []
    dialog.receive_request(in_dialog("BYE", 102))
    assert dialogs.remove_terminated() == [dialog]
    assert len(dialogs) == 0
