"""Reproduce records from a copy of the objects and the escrowed archive key alone.

Every record has a manifest object that carries its own wrapped key and lists the record's JSON
and its other objects' wrapped keys (filing.build_manifest). So a replica bucket or folder plus the
archive key from `tapeline key import` is enough to open every record's content and check it
against the SHA-256 the manifest names, with no index at all. A record amended later has several
manifests; the newest (the one listing the most objects) describes it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tapeline.archive.crypto import ArchiveKey
from tapeline.archive.objects import ObjectStore
from tapeline.archive.vault import Vault
from tapeline.errors import IntegrityError, NotFound

MANIFEST_SCHEMA = "tapeline.manifest/1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reproduced:
    """One record as read back from the copy: its JSON and its objects' checked hashes."""

    record: dict[str, Any]
    objects: dict[str, str]  # object id -> SHA-256 of the plaintext, checked on opening


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestCopy:
    """One manifest object as read from a copy: its id, its JSON and its plaintext's hash."""

    object_id: str
    body: dict[str, Any]
    sha256: str
    size: int


def _manifest_copy(vault: Vault, object_id: str) -> ManifestCopy | None:
    """The manifest stored under `object_id`, or None when the object is not a manifest."""
    try:
        plain = vault.load_self_keyed(object_id)
        body = json.loads(plain)
    except (IntegrityError, ValueError, UnicodeDecodeError):
        return None  # other objects carry no key of their own: not a manifest
    if not isinstance(body, dict) or body.get("schema") != MANIFEST_SCHEMA:
        return None
    return ManifestCopy(
        object_id=object_id, body=body, sha256=hashlib.sha256(plain).hexdigest(), size=len(plain)
    )


def manifests_by_record(vault: Vault, store: ObjectStore) -> dict[str, list[ManifestCopy]]:
    """Every record's manifests in `store`, oldest first (the last one lists the most objects).

    An amended record has one manifest per amendment; each lists everything filed so far.
    """
    found: dict[str, list[ManifestCopy]] = {}
    for object_id in store.ids():
        copy = _manifest_copy(vault, object_id)
        if copy is not None:
            found.setdefault(str(copy.body["record"]["id"]), []).append(copy)
    for versions in found.values():
        versions.sort(key=lambda c: (len(c.body["objects"]), c.object_id))
    return found


def reproduce(store: ObjectStore, archive_key: ArchiveKey) -> list[Reproduced]:
    """Every record whose manifest is in `store`, each object opened and hash-checked.

    Raises:
        IntegrityError: an object a manifest lists does not open or does not match its hash.
        NotFound: an object a manifest lists is missing from the copy.
        StorageError: the copy cannot be read.
    """
    vault = Vault(store, archive_key)
    newest = {rid: found[-1].body for rid, found in manifests_by_record(vault, store).items()}
    found = []
    for rid in sorted(newest):
        body = newest[rid]
        checked = {}
        for item in body["objects"]:
            oid, sha = str(item["object_id"]), str(item["sha256"])
            try:
                vault.load(oid, base64.b64decode(item["wrapped_key"]), sha)
            except NotFound as exc:
                raise NotFound(f"record {rid}: object {oid} is missing from the copy") from exc
            checked[oid] = sha
        found.append(Reproduced(record=body["record"], objects=checked))
    return found
