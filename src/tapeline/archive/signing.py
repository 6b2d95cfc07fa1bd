"""Ed25519 signatures over canonical JSON: certificates, checkpoints and export manifests.

Verification needs only the public key text (`ed25519:<base64>`), so an examiner checks an export
or a certificate offline, without the appliance.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_KEY_PREFIX = "ed25519:"


def canonical_json(value: Any) -> bytes:  # noqa: ANN401  # any JSON value
    """The one byte form that is signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """A base64 Ed25519 signature of `data`."""
    return base64.b64encode(key.sign(data)).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Read `ed25519:<base64>`.

    Raises:
        ValueError: not a public key in that form.
    """
    if not text.startswith(PUBLIC_KEY_PREFIX):
        raise ValueError("public key must start with ed25519:")
    try:
        raw = base64.b64decode(text.removeprefix(PUBLIC_KEY_PREFIX), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not an Ed25519 public key") from exc


def verify(public_key: str, data: bytes, signature: str) -> bool:
    """Whether `signature` is the key's signature of `data` (False for any malformed input)."""
    try:
        key = parse_public_key(public_key)
        key.verify(base64.b64decode(signature, validate=True), data)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
