"""`tapeline verify-export`: check an export bundle offline and name every file that changed.

Needs nothing but the zip: the manifest's signature is checked with the public key in the bundle
(and, when given, against the key the examiner got from `tapeline info`), then every file is
re-hashed against the manifest; missing and unlisted files are named too.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tapeline.archive.export import MANIFEST, PUBLIC_KEY, SIGNATURE, UNSIGNED
from tapeline.archive.signing import verify


@dataclass(slots=True)
class ExportReport:
    """What verify-export found."""

    files_checked: int = 0
    records: int = 0
    public_key: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem at all."""
        return not self.problems


def _read(bundle: zipfile.ZipFile, name: str) -> bytes | None:
    """A member's bytes, or None when the zip cannot give them back intact (CRC, inflate)."""
    try:
        return bundle.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError):
        return None


def verify_export(path: Path, *, expected_key: str | None = None) -> ExportReport:
    """Check signature, hashes and completeness of an export zip."""
    report = ExportReport()
    try:
        bundle = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        report.problems.append(f"{path}: not a readable zip ({exc})")
        return report
    with bundle:
        manifest_bytes = _read(bundle, MANIFEST)
        signature = _read(bundle, SIGNATURE)
        if manifest_bytes is None or signature is None:
            report.problems.append(f"{MANIFEST} or {SIGNATURE}: missing or damaged")
            return report
        try:
            manifest = json.loads(manifest_bytes)
        except ValueError:
            report.problems.append(f"{MANIFEST}: not JSON")
            return report
        report.records = len(manifest.get("records", []))
        _check_signature(
            bundle,
            manifest,
            manifest_bytes=manifest_bytes,
            signature=signature,
            expected_key=expected_key,
            report=report,
        )
        _check_files(bundle, manifest.get("files", {}), report)
    return report


def _check_signature(  # noqa: PLR0913  # the parts being checked against each other
    bundle: zipfile.ZipFile,
    manifest: dict[str, object],
    *,
    manifest_bytes: bytes,
    signature: bytes,
    expected_key: str | None,
    report: ExportReport,
) -> None:
    key = str(manifest.get("public_key", ""))
    report.public_key = key
    if not verify(key, manifest_bytes, signature.decode(errors="replace").strip()):
        report.problems.append(f"{MANIFEST}: the signature does not verify")
    if expected_key is not None and key != expected_key:
        report.problems.append(f"{MANIFEST}: signed by {key}, not by {expected_key}")
    bundled_key = _read(bundle, PUBLIC_KEY)
    if bundled_key is not None and bundled_key.decode(errors="replace").strip() != key:
        report.problems.append(f"{PUBLIC_KEY}: differs from the key in the manifest")


def _check_files(
    bundle: zipfile.ZipFile, files: dict[str, dict[str, object]], report: ExportReport
) -> None:
    present = set(bundle.namelist())
    for name, expected in sorted(files.items()):
        report.files_checked += 1
        if name not in present:
            report.problems.append(f"{name}: missing from the bundle")
            continue
        data = _read(bundle, name)
        if data is None:
            report.problems.append(f"{name}: changed (the zip cannot read it back intact)")
        elif hashlib.sha256(data).hexdigest() != expected.get("sha256"):
            report.problems.append(f"{name}: changed (SHA-256 differs from the manifest)")
    report.problems.extend(
        f"{name}: not listed in the manifest" for name in sorted(present - set(files) - UNSIGNED)
    )
