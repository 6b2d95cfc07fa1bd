"""`tapeline key export`: both appliance keys, encrypted with a passphrase, for escrow.

Format (JSON): scrypt parameters and salt, an AES-256-GCM nonce, and the sealed bundle of the
archive key file and the signing key file. Losing these keys loses the archive; the export is the
firm's way not to.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tapeline.errors import AccessDenied, TapelineError

SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
MIN_PASSPHRASE = 12
_AAD = b"tapeline-key-export/1"


def _kdf(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def export_keys(archive_key_file: Path, signing_key_file: Path, passphrase: str) -> bytes:
    """The encrypted export bundle.

    Raises:
        TapelineError: the passphrase is too short.
    """
    if len(passphrase) < MIN_PASSPHRASE:
        raise TapelineError(f"passphrase must have at least {MIN_PASSPHRASE} characters")
    bundle = json.dumps(
        {
            "archive_key": archive_key_file.read_text(encoding="ascii"),
            "signing_key": signing_key_file.read_text(encoding="ascii"),
        }
    ).encode()
    salt, nonce = os.urandom(16), os.urandom(12)
    sealed = AESGCM(_kdf(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(
        nonce, bundle, _AAD
    )
    doc = {
        "format": "tapeline-key-export/1",
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
        "salt": base64.b64encode(salt).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "sealed": base64.b64encode(sealed).decode(),
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


def open_export(data: bytes, passphrase: str) -> dict[str, str]:
    """The key files' contents from an export.

    Raises:
        AccessDenied: wrong passphrase or altered file.
    """
    doc = json.loads(data)
    kdf = doc["kdf"]
    key = _kdf(passphrase, base64.b64decode(doc["salt"]), kdf["n"], kdf["r"], kdf["p"])
    try:
        plain = AESGCM(key).decrypt(
            base64.b64decode(doc["nonce"]), base64.b64decode(doc["sealed"]), _AAD
        )
    except InvalidTag as exc:
        raise AccessDenied("wrong passphrase, or the export was altered") from exc
    result: dict[str, str] = json.loads(plain)
    return result


def import_keys(
    data: bytes, passphrase: str, archive_key_file: Path, signing_key_file: Path
) -> None:
    """Write both key files from an export (a restored or an additional node).

    Existing key files are never overwritten: a node's keys are replaced by hand or not at all.

    Raises:
        AccessDenied: wrong passphrase or altered file.
        TapelineError: a key file exists already, or cannot be written.
    """
    keys = open_export(data, passphrase)
    written: list[Path] = []
    try:
        for path, text in (
            (archive_key_file, keys["archive_key"]),
            (signing_key_file, keys["signing_key"]),
        ):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            written.append(path)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(text)
    except FileExistsError as exc:
        for path in written:
            path.unlink()
        raise TapelineError(f"{exc.filename} exists already; not overwritten") from exc
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise TapelineError(f"cannot write key file: {exc.strerror}") from exc
