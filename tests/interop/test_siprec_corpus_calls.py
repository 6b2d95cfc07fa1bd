"""Real vendor SIPREC bodies (Cisco CUBE, Sonus) inside real INVITEs to a running recorder."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tapeline.proto.sdp import parse_sdp
from tapeline.proto.sip import SipResponse, parse_datagram
from tests.conftest import CORPUS
from tests.integration.test_siprec_sipp import (  # noqa: F401  # fixtures used by name
    _udp_request,
    _wait_filed,
    recorder,
    siprec_config,
)
from tests.unit.daemon.siprec.test_core import _request

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("name", "numbers"),
    [
        ("drachtio__cisco-siprec-offer.txt", {"7301", "7300"}),
        ("drachtio__sonus-siprec-offer.txt", {"2249888500", "2249888012"}),
    ],
)
def test_vendor_body_is_answered_and_its_parties_filed(
    recorder: tuple[Path, int],  # noqa: F811  # the fixture imported above
    name: str,
    numbers: set[str],
) -> None:
    source = CORPUS / name
    if not source.exists():
        pytest.skip(f"public corpus not present at {CORPUS} (see shared/corpus/SOURCES.md)")
    text = source.read_text()
    boundary = next(line for line in text.splitlines() if line.startswith("--"))[2:]
    body = text.replace("\r\n", "\n").replace("\n", "\r\n")
    config_path, sip_port = recorder
    call_id = f"corpus-{name}"
    target = ("127.0.0.1", sip_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        invite = _request(
            "INVITE",
            body=body,
            content_type=f"multipart/mixed;boundary={boundary}",
            call_id=call_id,
            branch=f"z9hG4bK{abs(hash(name))}",
        )
        sock.sendto(invite, target)
        while True:
            reply = parse_datagram(sock.recv(65536))
            assert isinstance(reply, SipResponse)
            if reply.status_code >= 200:
                break
        assert reply.status_code == 200
        answer = parse_sdp(reply.body)
        assert [m.label for m in answer.media] == ["1", "2"]
        assert all(
            m.direction is not None and m.direction.value == "recvonly" for m in answer.media
        )
        tag = reply.to_addr.tag or ""
        sock.sendto(_request("ACK", to_tag=tag, call_id=call_id), target)
        bye = _request(
            "BYE", to_tag=tag, cseq=2, branch=f"z9hG4bKb{abs(hash(name))}", call_id=call_id
        )
        assert _udp_request(sock, target, bye) == 200
    record = _wait_filed(config_path, call_id)
    identifiers = {str(p["identifier"]) for p in record["participants"]}  # type: ignore[attr-defined]
    assert all(any(n in ident for ident in identifiers) for n in numbers), identifiers
    assert record["outcome"] == "no_rtp"
