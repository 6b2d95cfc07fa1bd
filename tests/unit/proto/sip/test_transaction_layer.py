import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.proto.errors import ProtocolViolation
from tapeline.proto.sip.message import SipRequest
from tapeline.proto.sip.parser import parse_datagram
from tapeline.proto.sip.serializer import build_response
from tapeline.proto.sip.transaction import (
    SendBytes,
    TransactionKey,
    TransactionTimedOut,
    TxInput,
    TxState,
)
from tapeline.proto.sip.transaction_layer import (
    AckReceived,
    InviteCancelled,
    LayerOutput,
    RequestReceived,
    TransactionLayer,
    random_tag,
)
from tests.unit.proto.sip.samples import request, siprec_invite

ADDR = ("192.0.2.4", 5060)


def parsed(data: bytes) -> SipRequest:
    message = parse_datagram(data)
    assert isinstance(message, SipRequest)
    return message


INVITE = parsed(siprec_invite())


def statuses(outputs: list[LayerOutput]) -> list[int]:
    return [o.message.status_code for o in outputs if isinstance(o, SendBytes)]


def start_invite(layer: TransactionLayer, now: float = 0) -> TransactionKey:
    outputs = layer.receive_request(INVITE, addr=ADDR, reliable=False, now=now)
    assert statuses(outputs) == [100]
    event = outputs[-1]
    assert isinstance(event, RequestReceived)
    assert event.request == INVITE
    assert event.addr == ADDR
    return event.key


def cancel_for(invite: SipRequest) -> SipRequest:
    data = invite.raw.split(b"\r\n\r\n")[0].replace(b"INVITE sip:", b"CANCEL sip:", 1)
    data = data.replace(b"CSeq: 101 INVITE", b"CSeq: 101 CANCEL")
    head = b"\r\n".join(
        line for line in data.split(b"\r\n") if not line.startswith(b"Content-Length")
    )
    return parsed(head + b"\r\nContent-Length: 0\r\n\r\n")


def ack_for(invite: SipRequest, *, branch: str, to_tag: str) -> SipRequest:
    data = invite.raw.split(b"\r\n\r\n")[0].replace(b"INVITE sip:", b"ACK sip:", 1)
    data = data.replace(b"CSeq: 101 INVITE", b"CSeq: 101 ACK")
    data = data.replace(b"z9hG4bKdf6b622b648d9", branch.encode())
    data = data.replace(
        b"To: <sip:recorder@example.com>", b"To: <sip:recorder@example.com>;tag=" + to_tag.encode()
    )
    head = b"\r\n".join(
        line for line in data.split(b"\r\n") if not line.startswith(b"Content-Length")
    )
    return parsed(head + b"\r\nContent-Length: 0\r\n\r\n")


def test_new_invite_gets_100_and_reaches_the_tu_once() -> None:
    layer = TransactionLayer()
    key = start_invite(layer)
    assert len(layer) == 1
    again = layer.receive_request(INVITE, addr=ADDR, reliable=False, now=0.1)
    assert statuses(again) == [100]
    tx = layer.transaction(key)
    assert tx is not None
    assert tx.state is TxState.PROCEEDING


def test_200_then_ack_with_new_branch_goes_to_the_dialog_and_stops_retransmits() -> None:
    layer = TransactionLayer()
    key = start_invite(layer)
    ok = build_response(INVITE, 200, to_tag="srs")
    assert statuses(layer.send_response(key, ok, now=0)) == [200]
    assert layer.get_timer() == 0.5
    assert statuses(layer.handle_timer(0.5)) == [200]
    ack = ack_for(INVITE, branch="z9hG4bKack1", to_tag="srs")
    assert layer.receive_request(ack, addr=ADDR, reliable=False, now=1) == [
        AckReceived(request=ack, addr=ADDR)
    ]
    assert layer.get_timer() == 32
    assert layer.handle_timer(32) == []
    assert len(layer) == 0
    assert layer.get_timer() is None


def test_2xx_ack_reusing_the_invite_branch_also_stops_retransmits() -> None:
    layer = TransactionLayer()
    key = start_invite(layer)
    layer.send_response(key, build_response(INVITE, 200, to_tag="srs"), now=0)
    ack = ack_for(INVITE, branch="z9hG4bKdf6b622b648d9", to_tag="srs")
    assert layer.receive_request(ack, addr=ADDR, reliable=False, now=0.1) == [
        AckReceived(request=ack, addr=ADDR)
    ]
    assert layer.get_timer() == 32


def test_2xx_never_acked_reports_timer_l() -> None:
    layer = TransactionLayer()
    key = start_invite(layer)
    layer.send_response(key, build_response(INVITE, 200, to_tag="srs"), now=0)
    outputs: list[LayerOutput] = []
    while (deadline := layer.get_timer()) is not None:
        outputs.extend(layer.handle_timer(deadline))
    assert outputs[-1] == TransactionTimedOut(key=key, timer=TxInput.TIMER_L)


def test_stray_ack_matches_nothing_and_still_goes_to_the_tu() -> None:
    layer = TransactionLayer()
    ack = ack_for(INVITE, branch="z9hG4bKstray", to_tag="srs")
    assert layer.receive_request(ack, addr=ADDR, reliable=False, now=0) == [
        AckReceived(request=ack, addr=ADDR)
    ]


def test_ack_before_any_final_response_is_dropped() -> None:
    layer = TransactionLayer()
    start_invite(layer)
    ack = ack_for(INVITE, branch="z9hG4bKdf6b622b648d9", to_tag="srs")
    assert layer.receive_request(ack, addr=ADDR, reliable=False, now=0) == []


def test_cancel_of_pending_invite_gives_200_and_487_with_the_same_tag() -> None:
    layer = TransactionLayer(make_tag=lambda: "cancelled")
    key = start_invite(layer)
    cancel = cancel_for(INVITE)
    outputs = layer.receive_request(cancel, addr=ADDR, reliable=False, now=1)
    sends = [o for o in outputs if isinstance(o, SendBytes)]
    assert [(s.message.status_code, s.message.cseq.method) for s in sends] == [
        (200, "CANCEL"),
        (487, "INVITE"),
    ]
    assert {s.message.to_addr.tag for s in sends} == {"cancelled"}
    assert outputs[-1] == InviteCancelled(key=key, cancel=cancel)
    # The ACK for the 487 carries the INVITE's branch and is absorbed by the transaction.
    ack = ack_for(INVITE, branch="z9hG4bKdf6b622b648d9", to_tag="cancelled")
    assert layer.receive_request(ack, addr=ADDR, reliable=False, now=1.1) == []
    tx = layer.transaction(key)
    assert tx is not None
    assert tx.state is TxState.CONFIRMED
    # A retransmitted CANCEL gets its 200 again from the CANCEL transaction.
    assert statuses(layer.receive_request(cancel, addr=ADDR, reliable=False, now=1.2)) == [200]


def test_cancel_reuses_the_tag_of_a_provisional_response() -> None:
    layer = TransactionLayer(make_tag=lambda: "unused")
    key = start_invite(layer)
    layer.send_response(key, build_response(INVITE, 180, to_tag="early"), now=0)
    outputs = layer.receive_request(cancel_for(INVITE), addr=ADDR, reliable=True, now=1)
    tags = {o.message.to_addr.tag for o in outputs if isinstance(o, SendBytes)}
    assert tags == {"early"}


def test_cancel_after_final_response_gets_200_only() -> None:
    layer = TransactionLayer(make_tag=lambda: "t")
    key = start_invite(layer)
    layer.send_response(key, build_response(INVITE, 200, to_tag="srs"), now=0)
    outputs = layer.receive_request(cancel_for(INVITE), addr=ADDR, reliable=False, now=1)
    assert statuses(outputs) == [200]
    assert not any(isinstance(o, InviteCancelled) for o in outputs)


def test_cancel_without_invite_gets_481() -> None:
    layer = TransactionLayer()
    outputs = layer.receive_request(cancel_for(INVITE), addr=ADDR, reliable=False, now=0)
    assert statuses(outputs) == [481]


def test_non_invite_request_retransmission_and_timer_j() -> None:
    layer = TransactionLayer()
    bye = parsed(request("BYE", to_tag="srs", cseq=2))
    (event,) = layer.receive_request(bye, addr=ADDR, reliable=False, now=0)
    assert isinstance(event, RequestReceived)
    assert layer.receive_request(bye, addr=ADDR, reliable=False, now=0.1) == []
    layer.send_response(event.key, build_response(bye, 200), now=0.2)
    assert statuses(layer.receive_request(bye, addr=ADDR, reliable=False, now=1)) == [200]
    assert layer.get_timer() == pytest.approx(32.2)
    layer.handle_timer(32.2)
    assert len(layer) == 0


def test_response_for_unknown_transaction_is_a_protocol_violation() -> None:
    layer = TransactionLayer()
    key = TransactionKey(branch="z9hG4bKnone", sent_by="h", method="BYE")
    with pytest.raises(ProtocolViolation, match=r"^no live transaction for this response$"):
        layer.send_response(key, build_response(INVITE, 200), now=0)


def test_random_tags_are_distinct_hex() -> None:
    first, second = random_tag(), random_tag()
    assert first != second
    assert len(first) == 16
    int(first, 16)


def test_ack_stops_every_accepted_invite_sharing_call_id_and_cseq() -> None:
    layer = TransactionLayer()
    key = start_invite(layer)
    layer.send_response(key, build_response(INVITE, 200, to_tag="srs"), now=0)
    # A re-INVITE reusing CSeq 101 with a new branch (RFC 8068 §3.2.2 examples do this).
    reinvite = parsed(siprec_invite(branch="z9hG4bKre"))
    outputs = layer.receive_request(reinvite, addr=ADDR, reliable=False, now=1)
    (event,) = [o for o in outputs if isinstance(o, RequestReceived)]
    layer.send_response(event.key, build_response(reinvite, 200, to_tag="srs"), now=1)
    ack = ack_for(INVITE, branch="z9hG4bKack2", to_tag="srs")
    layer.receive_request(ack, addr=ADDR, reliable=False, now=1.1)
    assert statuses(layer.handle_timer(20)) == []


METHODS = ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"]


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(METHODS),
            st.sampled_from(["z9hG4bK1", "z9hG4bK2", "old-style"]),
            st.sampled_from([None, 100, 180, 200, 404, 487]),
            st.floats(min_value=0, max_value=40),
        ),
        max_size=25,
    )
)
def test_no_sequence_of_peer_requests_raises(
    steps: list[tuple[str, str, int | None, float]],
) -> None:
    layer = TransactionLayer(make_tag=lambda: "t")
    now = 0.0
    for method, branch, status, delay in steps:
        now += delay
        req = parsed(request(method, branch=branch))
        for output in layer.receive_request(req, addr=ADDR, reliable=False, now=now):
            if isinstance(output, RequestReceived) and status is not None:
                layer.send_response(output.key, build_response(req, status), now=now)
        layer.handle_timer(now)
    layer.handle_timer(now + 100)
    # Only requests the TU never answered remain, and they hold no timer.
    assert layer.get_timer() is None


def test_layer_responses_carry_received_and_rport() -> None:
    layer = TransactionLayer()
    outputs = layer.receive_request(INVITE, addr=("203.0.113.7", 40000), reliable=False, now=0)
    (trying,) = [o for o in outputs if isinstance(o, SendBytes)]
    assert trying.addr == ("203.0.113.7", 40000)
    assert trying.message.top_via.received == "203.0.113.7"
    assert trying.message.top_via.rport == 40000
