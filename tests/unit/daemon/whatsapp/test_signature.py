"""Signature vectors of whatsapp.md §3, SHA-256 normalisation, and status ordering."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from tapeline.archive.amend import status_supersedes
from tapeline.daemon.whatsapp.media import normalise_sha256
from tapeline.daemon.whatsapp.signature import Verdict, check, parse_secrets, sign

SECRET = b"tapeline-test-app-secret"
S2 = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":'
    b'{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881",'
    b'"phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Jos\\u00e9"},'
    b'"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.TEST1",'
    b'"timestamp":"1749416383","type":"text","text":{"body":"caf\\u00e9 \\ud83d\\ude00 a\\/b"}}]},'
    b'"field":"messages"}]}]}'
)


def test_vector_s1() -> None:
    assert sign(b"test", b"secret") == (
        "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
    )


def test_vectors_s2_to_s5_only_the_raw_bytes_verify() -> None:
    assert len(S2) == 441
    header = "sha256=0ab55f4595c06d60a8a7ba0baea59714c52dce8b31d67ad17bab9943097a6aa8"
    assert check(S2, header, [SECRET]) is Verdict.VALID
    parsed = json.loads(S2)
    reserialised = {
        "31e0d6da1633aadd33c99f15feee9aac22797fb037b793f775cfefd4584a19c0": json.dumps(
            parsed, separators=(",", ":"), ensure_ascii=False
        ).encode(),
        "2cebfe5a35d4eeec449c03d060e715274f4e40971bdf09699f4a06b9abca568d": json.dumps(
            parsed, separators=(",", ":")
        ).encode(),
        "d32f0bb5aac2d2139168ed5dcfb7c2505b67d01c0eba657993f6ee2724d6acbd": json.dumps(
            parsed
        ).encode(),
    }
    for digest, body in reserialised.items():
        assert hmac.new(SECRET, body, hashlib.sha256).hexdigest() == digest
        assert check(body, header, [SECRET]) is Verdict.MISMATCH


@pytest.mark.parametrize(
    ("header", "verdict"),
    [
        (None, Verdict.MISSING),
        ("", Verdict.MISSING),
        ("sha256=", Verdict.MISSING),
        ("sha1=abcdef", Verdict.MISSING),
        ("sha256=00", Verdict.MISMATCH),
        ("sha256=é", Verdict.MISMATCH),
        (
            "  SHA256=0329A06B62CD16B33EB6792BE8C60B158D89A2EE3A876FCE9A881EBB488C0914  ",
            Verdict.VALID,
        ),
    ],
)
def test_header_forms(header: str | None, verdict: Verdict) -> None:
    assert check(b"test", header, [b"other", b"secret"]) is verdict


def test_no_secret_never_fails_open() -> None:
    with pytest.raises(ValueError, match="no app secret configured"):
        check(b"test", "sha256=00", [])
    assert parse_secrets("\n# comment\n  \n") == []
    assert parse_secrets("new\nold\n") == [b"new", b"old"]


def test_sha256_normalisation_hex_and_base64() -> None:
    digest = hashlib.sha256(b"media").digest()
    assert normalise_sha256(digest.hex().upper()) == digest.hex()
    assert normalise_sha256(base64.b64encode(digest).decode()) == digest.hex()
    assert normalise_sha256(base64.urlsafe_b64encode(digest).decode().rstrip("=")) == digest.hex()
    assert normalise_sha256("4654+8g=") is None  # pywa's placeholder: not a SHA-256 at all
    assert normalise_sha256(None) is None


@pytest.mark.parametrize(
    ("current", "new", "applies"),
    [
        (None, "sent", True),
        ("sent", "delivered", True),
        ("delivered", "sent", False),
        ("read", "delivered", False),
        ("read", "read", False),
        ("read", "played", True),
        ("sent", "failed", True),
        ("failed", "read", False),
        ("received", "sent", True),
    ],
)
def test_status_order(current: str | None, new: str, *, applies: bool) -> None:
    assert status_supersedes(current, new) is applies
