"""A scripted SIPREC client against the SIP layers, wired in memory (style guide §7.2).

The TU here is a few lines of test code standing in for the SIPREC session core: it answers
INVITE with 200 + SDP, OPTIONS with 200, in-dialog requests after the dialog check, and
unknown-dialog requests with 481.
"""

from tapeline.proto.sip import (
    NEED_DATA,
    AckReceived,
    Dialog,
    DialogSet,
    DialogState,
    LayerOutput,
    RequestReceived,
    SendBytes,
    SipFramer,
    SipRequest,
    SipResponse,
    TransactionLayer,
    build_response,
    parse_datagram,
    parse_multipart,
)
from tests.unit.proto.sip.samples import SDP, request, siprec_invite

SRC = ("198.51.100.1", 5060)
CONTACT = "<sip:srs@192.0.2.9>;+sip.srs"
CALL_ID = "d253c800-b0d1ea39-4a7dd-3f0e20a"


class Srs:
    """The test's transaction user: the minimum an SRS does on top of the SIP layers."""

    def __init__(self) -> None:
        self.layer = TransactionLayer(make_tag=lambda: "srs-tag")
        self.dialogs = DialogSet()
        self.acked: list[SipRequest] = []

    def receive(self, data: bytes, now: float, *, reliable: bool = False) -> list[SipResponse]:
        message = parse_datagram(data)
        assert isinstance(message, SipRequest)
        return self.handle(message, now, reliable=reliable)

    def handle(self, message: SipRequest, now: float, *, reliable: bool) -> list[SipResponse]:
        outputs = self.layer.receive_request(message, addr=SRC, reliable=reliable, now=now)
        return self.dispatch(outputs, now)

    def dispatch(self, outputs: list[LayerOutput], now: float) -> list[SipResponse]:
        sent: list[SipResponse] = []
        for output in outputs:
            if isinstance(output, SendBytes):
                sent.append(output.message)
            elif isinstance(output, RequestReceived):
                sent.extend(self.dispatch(self.answer(output, now), now))
            elif isinstance(output, AckReceived):
                dialog = self.dialogs.match(output.request)
                if dialog is not None and dialog.receive_request(output.request) is None:
                    self.acked.append(output.request)
        self.dialogs.remove_terminated()
        return sent

    def answer(self, event: RequestReceived, now: float) -> list[LayerOutput]:
        req = event.request
        if req.to_addr.tag is None and req.method == "INVITE":
            content_type = req.content_type
            assert content_type is not None
            assert content_type.boundary is not None
            parts = parse_multipart(req.body, content_type.boundary)
            assert parts[0].body == SDP
            dialog = Dialog.from_invite(req, local_tag="srs-tag")
            response = build_response(
                req,
                200,
                to_tag="srs-tag",
                contact=CONTACT,
                body=b"v=0\r\n",
                content_type="application/sdp",
            )
            dialog.response_sent(response)
            self.dialogs.add(dialog)
        elif req.to_addr.tag is None:
            response = build_response(req, 200, to_tag="srs-tag")
        elif (found := self.dialogs.match(req)) is None:
            response = build_response(req, 481)
        elif (reject := found.receive_request(req)) is not None:
            response = build_response(req, reject.status_code, reject.reason)
        else:
            response = build_response(req, 200)
        return self.layer.send_response(event.key, response, now=now)


def ack(branch: str) -> bytes:
    return request("ACK", branch=branch, to_tag="srs-tag", call_id=CALL_ID, cseq=101).replace(
        b"tag=1928301774", b"tag=35e195d2-947d-4585-946f-09839247"
    )


def bye(cseq: int, branch: str = "z9hG4bKbye1") -> bytes:
    return request("BYE", branch=branch, to_tag="srs-tag", call_id=CALL_ID, cseq=cseq).replace(
        b"tag=1928301774", b"tag=35e195d2-947d-4585-946f-09839247"
    )


def test_siprec_call_over_udp_with_retransmissions() -> None:
    srs = Srs()
    first = srs.receive(siprec_invite(), now=0)
    assert [r.status_code for r in first] == [100, 200]
    ok = first[1]
    assert ok.headers.get("Contact") == CONTACT
    assert ok.to_addr.tag == "srs-tag"
    # The INVITE retransmitted after the 200 is absorbed (RFC 6026 Accepted).
    assert srs.receive(siprec_invite(), now=0.2) == []
    # No ACK yet: Timer G resends the 200.
    assert [r.status_code for r in srs.dispatch(srs.layer.handle_timer(0.5), 0.5)] == [200]
    assert srs.receive(ack("z9hG4bKack"), now=0.6) == []
    assert len(srs.acked) == 1
    dialog = srs.dialogs.match(srs.acked[0])
    assert dialog is not None
    assert dialog.state is DialogState.CONFIRMED
    # An out-of-order request gets 500, the BYE 200, a BYE retransmission the same 200.
    assert [r.status_code for r in srs.receive(bye(100, "z9hG4bKold"), now=1)] == [500]
    assert [r.status_code for r in srs.receive(bye(102), now=2)] == [200]
    assert [r.status_code for r in srs.receive(bye(102), now=2.5)] == [200]
    assert len(srs.dialogs) == 0
    assert [r.status_code for r in srs.receive(bye(103, "z9hG4bKlate"), now=3)] == [481]
    assert srs.receive(request("OPTIONS"), now=4)[0].status_code == 200
    while (deadline := srs.layer.get_timer()) is not None:
        srs.dispatch(srs.layer.handle_timer(deadline), deadline)
    assert len(srs.layer) == 0


def test_siprec_call_over_tcp_fed_one_byte_at_a_time() -> None:
    srs = Srs()
    framer = SipFramer()
    stream = siprec_invite(transport="TCP") + b"\r\n\r\n" + ack("z9hG4bKack") + bye(102)
    statuses: list[int] = []
    for index, byte in enumerate(stream):
        framer.receive_data(bytes([byte]))
        while (event := framer.next_event()) is not NEED_DATA:
            assert isinstance(event, SipRequest)
            responses = srs.handle(event, now=index / 1000, reliable=True)
            statuses.extend(r.status_code for r in responses)
    assert statuses == [100, 200, 200]
    assert len(srs.acked) == 1
    assert len(srs.dialogs) == 0
