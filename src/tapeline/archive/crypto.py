"""Keys and the sealed-chunk encryption of objects.

Strategy: every object gets its own 256-bit data key (so destroying one record's keys can never
touch another's). The object is cut into chunks of `CHUNK_SIZE` bytes, each sealed with AES-256-GCM
under a nonce made of the chunk index and a final-chunk flag, and authenticated together with the
object id. A reader can therefore seek to any chunk (playback with HTTP Range), truncation is
detected (the last chunk must carry the final flag), and chunks cannot be swapped between objects
or reordered. Nonces are deterministic, which is safe because a data key seals exactly one object.

Data keys are wrapped by the archive key (AES-256-GCM, random nonce, the object id as associated
data). The archive key and the Ed25519 signing key are files; `generate_*` creates them with 0600
bits and the installer sets `root:tapeline 0640`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tapeline.errors import IntegrityError, StorageError

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
CHUNK_SIZE = 64 * 1024
ARCHIVE_KEY_HEADER = "tapeline-archive-key-v1"
_WRAP_AAD = b"tapeline/data-key/v1|"

OBJECT_MAGIC = b"TPLO"
OBJECT_VERSION = 1
# magic, version, flags, chunk size, object id (16 bytes)
_OBJECT_HEADER = struct.Struct("!4sBBI16s")
OBJECT_HEADER_SIZE = _OBJECT_HEADER.size
_FLAG_FINAL = 1


@dataclass(frozen=True, slots=True)
class ArchiveKey:
    """The key that wraps every data key; `key_id` names it in wrapped keys for rotation."""

    secret: bytes

    @property
    def key_id(self) -> str:
        """A short public name of this key (not secret)."""
        return hashlib.sha256(b"tapeline-key-id|" + self.secret).hexdigest()[:16]

    def wrap(self, data_key: bytes, object_id: bytes) -> bytes:
        """Seal a data key for storage beside the object it opens."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self.secret).encrypt(nonce, data_key, _WRAP_AAD + object_id)

    def unwrap(self, wrapped: bytes, object_id: bytes) -> bytes:
        """Open a wrapped data key.

        Raises:
            IntegrityError: the wrapped key was altered, or is for another object or key.
        """
        nonce, sealed = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        try:
            return AESGCM(self.secret).decrypt(nonce, sealed, _WRAP_AAD + object_id)
        except InvalidTag as exc:
            raise IntegrityError("data key does not open with this archive key") from exc


def new_data_key() -> bytes:
    """A fresh random 256-bit data key."""
    return AESGCM.generate_key(bit_length=256)


def _write_new_secret_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def generate_archive_key(path: Path) -> None:
    """Create a new archive key file; refuses to overwrite an existing one."""
    encoded = base64.b64encode(os.urandom(KEY_BYTES)).decode()
    _write_new_secret_file(path, f"{ARCHIVE_KEY_HEADER}\n{encoded}\n".encode())


def load_archive_key(path: Path) -> ArchiveKey:
    """Read the archive key.

    Raises:
        StorageError: missing, unreadable or malformed file.
    """
    try:
        lines = path.read_text(encoding="ascii").split()
    except OSError as exc:
        raise StorageError(f"archive key {path}: {exc.strerror}") from exc
    if len(lines) != 2 or lines[0] != ARCHIVE_KEY_HEADER:  # noqa: PLR2004  # header + key
        raise StorageError(f"archive key {path}: not a Tapeline archive key file")
    secret = base64.b64decode(lines[1])
    if len(secret) != KEY_BYTES:
        raise StorageError(f"archive key {path}: wrong key length")
    return ArchiveKey(secret)


def generate_signing_key(path: Path) -> None:
    """Create a new Ed25519 signing key (PKCS#8 PEM); refuses to overwrite an existing one."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_new_secret_file(path, pem)


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Read the Ed25519 signing key.

    Raises:
        StorageError: missing, unreadable or not an Ed25519 key.
    """
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise StorageError(f"signing key {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise StorageError(f"signing key {path}: not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise StorageError(f"signing key {path}: not an Ed25519 key")
    return key


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public half as `ed25519:<base64>`, as printed by `tapeline info` and in exports."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode()


def _nonce(index: int, *, final: bool) -> bytes:
    return index.to_bytes(NONCE_BYTES - 1, "big") + bytes([_FLAG_FINAL if final else 0])


def seal_object(object_id: bytes, data_key: bytes, plaintext: bytes) -> Iterator[bytes]:
    """Yield the header and then each sealed chunk of an object."""
    aead = AESGCM(data_key)
    yield _OBJECT_HEADER.pack(OBJECT_MAGIC, OBJECT_VERSION, 0, CHUNK_SIZE, object_id)
    count = max(1, -(-len(plaintext) // CHUNK_SIZE))
    view = memoryview(plaintext)
    for index in range(count):
        piece = bytes(view[index * CHUNK_SIZE : (index + 1) * CHUNK_SIZE])
        yield aead.encrypt(_nonce(index, final=index == count - 1), piece, object_id)


@dataclass(frozen=True, slots=True)
class ObjectHeader:
    """The clear header of a sealed object."""

    object_id: bytes
    chunk_size: int


def parse_object_header(data: bytes) -> ObjectHeader:
    """Read a sealed object's header.

    Raises:
        IntegrityError: not a Tapeline object, or an unknown version.
    """
    if len(data) < OBJECT_HEADER_SIZE:
        raise IntegrityError("object is shorter than its header")
    magic, version, _flags, chunk_size, object_id = _OBJECT_HEADER.unpack_from(data)
    if magic != OBJECT_MAGIC or version != OBJECT_VERSION or chunk_size <= 0:
        raise IntegrityError("not a Tapeline sealed object")
    return ObjectHeader(object_id=object_id, chunk_size=chunk_size)


def open_chunk(
    data_key: bytes, object_id: bytes, index: int, sealed: bytes, *, final: bool
) -> bytes:
    """Open one chunk.

    Raises:
        IntegrityError: the chunk was altered, moved, or its final flag is wrong.
    """
    try:
        return AESGCM(data_key).decrypt(_nonce(index, final=final), sealed, object_id)
    except InvalidTag as exc:
        raise IntegrityError(f"chunk {index} fails authentication") from exc


def open_object(object_id: bytes, data_key: bytes, sealed: bytes) -> bytes:
    """Decrypt a whole sealed object, checking every chunk and that none is missing at the end.

    Raises:
        IntegrityError: any byte altered, truncated, or the object belongs to another id.
    """
    header = parse_object_header(sealed)
    if header.object_id != object_id:
        raise IntegrityError("object header names another object id")
    body = memoryview(sealed)[OBJECT_HEADER_SIZE:]
    step = header.chunk_size + TAG_BYTES
    count = max(1, -(-len(body) // step))
    out = bytearray()
    for index in range(count):
        piece = bytes(body[index * step : (index + 1) * step])
        out += open_chunk(data_key, object_id, index, piece, final=index == count - 1)
    return bytes(out)
