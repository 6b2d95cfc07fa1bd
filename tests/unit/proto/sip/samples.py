"""SIP messages for the tests, shaped on RFC 7866 §9.1 (Figure 12) and RFC 8068 §3.2."""

SDP = (
    b"v=0\r\n"
    b"o=SRC 2890844526 2890844526 IN IP4 198.51.100.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 198.51.100.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 12240 RTP/AVP 0 8 101\r\n"
    b"a=sendonly\r\n"
    b"a=label:1\r\n"
    b"m=audio 12242 RTP/AVP 0 8 101\r\n"
    b"a=sendonly\r\n"
    b"a=label:2\r\n"
)

METADATA = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b"<recording xmlns='urn:ietf:params:xml:ns:recording:1'>\r\n"
    b"  <datamode>complete</datamode>\r\n"
    b"</recording>\r\n"
)

MULTIPART_BODY = (
    b"--foobar\r\n"
    b"Content-Type: application/sdp\r\n"
    b"\r\n" + SDP + b"\r\n"
    b"--foobar\r\n"
    b"Content-Type: application/rs-metadata+xml\r\n"
    b"Content-Disposition: recording-session\r\n"
    b"\r\n" + METADATA + b"\r\n"
    b"--foobar--\r\n"
)


def siprec_invite(
    *, body: bytes = MULTIPART_BODY, branch: str = "z9hG4bKdf6b622b648d9", transport: str = "UDP"
) -> bytes:
    """Return a SIPREC INVITE with a correct Content-Length."""
    return (
        b"INVITE sip:recorder@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/"
        + transport.encode()
        + b" src.example.com:5060;branch="
        + branch.encode()
        + b";rport\r\n"
        b"Max-Forwards: 70\r\n"
        b'From: "SRC" <sip:2000@example.com>;tag=35e195d2-947d-4585-946f-09839247\r\n'
        b"To: <sip:recorder@example.com>\r\n"
        b"Call-ID: d253c800-b0d1ea39-4a7dd-3f0e20a\r\n"
        b"Session-ID: ab30317f1a784dc48ff824d0d3715d86\r\n"
        b" ;remote=00000000000000000000000000000000\r\n"
        b"CSeq: 101 INVITE\r\n"
        b"Require: siprec\r\n"
        b"Accept: application/sdp, application/rs-metadata,\r\n"
        b"\tapplication/rs-metadata-request\r\n"
        b"Contact: <sip:2000@src.example.com>;+sip.src\r\n"
        b"Record-Route: <sip:proxy.example.com;lr>\r\n"
        b"Content-Type: multipart/mixed;boundary=foobar\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"\r\n" + body
    )


def request(
    method: str,
    *,
    branch: str = "z9hG4bKnashds8",
    cseq: int = 1,
    to_tag: str | None = None,
    call_id: str = "a84b4c76e66710",
    body: bytes = b"",
) -> bytes:
    """Return a small request with a Content-Length header."""
    to = b"To: <sip:recorder@example.com>" + (b";tag=" + to_tag.encode() if to_tag else b"")
    return (
        method.encode() + b" sip:recorder@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pc33.example.com;branch=" + branch.encode() + b"\r\n"
        b"Max-Forwards: 70\r\n" + to + b"\r\n"
        b"From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
        b"Call-ID: " + call_id.encode() + b"\r\n"
        b"CSeq: " + str(cseq).encode() + b" " + method.encode() + b"\r\n"
        b"Contact: <sip:alice@pc33.example.com>\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"\r\n" + body
    )
