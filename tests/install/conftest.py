"""Fixtures for the installer tests: one scratch-root install per session.

`install.sh --root DIR` builds a real venv (pip, with its cache), so it runs once per session.
The scratch root lives directly under /tmp with mode 0755 so the `tapeline` user can traverse it
(pytest's own tmp folders are 0700). The host gets the `tapeline` system user from the shipped
sysusers.d file (idempotent), and the scratch root is seeded with the same uid/gid, as it would be
on an appliance where the root is `/`, so files the installer makes `root:tapeline` are readable
by the host's `tapeline` user.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
INSTALL_SH = REPO / "install.sh"
UNINSTALL_SH = REPO / "uninstall.sh"
SYSTEMD_DIR = REPO / "systemd"
USER = "tapeline"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "installer tests need root (install.sh refuses anything else)"
    if not (REPO / "pyproject.toml").is_file():
        return "no pyproject.toml at the repository root"
    return None


SKIP_REASON = _skip_reason()


@dataclass(frozen=True)
class HostUser:
    """The host's `tapeline` account."""

    uid: int
    gid: int


@dataclass(frozen=True)
class InstalledRoot:
    """A scratch root that install.sh has installed into."""

    path: Path
    first_run: subprocess.CompletedProcess[str]
    uid: int
    gid: int
    source_entries_before: frozenset[str]

    def host_path(self, path: str) -> Path:
        """Map an absolute appliance path (`/etc/tapeline/...`) into the scratch root."""
        return self.path / path.lstrip("/")

    @property
    def venv(self) -> Path:
        """The installed venv."""
        return self.host_path("/opt/tapeline/venv")


def run_install(
    root: Path, *args: str, script: Path = INSTALL_SH
) -> subprocess.CompletedProcess[str]:
    """Run install.sh (or uninstall.sh) on `root` with a clean environment."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/root"),  # pip's cache lives there
    }
    return subprocess.run(
        ["bash", str(script), "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=1200,
    )


def tree_listing(
    root: Path, *, skip: tuple[Path, ...] = ()
) -> dict[str, tuple[str, int, int, str]]:
    """Map each path under `root` to (mode, uid, gid, sha256-or-link-target), skipping subtrees."""
    out: dict[str, tuple[str, int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if here / d not in skip)
        for name in [*dirnames, *sorted(filenames)]:
            path = here / name
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = "-> " + str(path.readlink())
            else:
                digest = ""
            out[str(path.relative_to(root))] = (
                stat.filemode(st.st_mode),
                st.st_uid,
                st.st_gid,
                digest,
            )
    return out


def venv_listing(venv: Path) -> dict[str, tuple[int, int, int]]:
    """Map each path in the venv to (mode, size, mtime_ns): any rebuild or rewrite changes it."""
    out: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(venv):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            out[str(path.relative_to(venv))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def source_entries() -> frozenset[str]:
    """Top-level names in the repository and in src/ (a build would add build/, *.egg-info)."""
    return frozenset(
        [p.name for p in REPO.iterdir()] + [f"src/{p.name}" for p in (REPO / "src").iterdir()]
    )


@pytest.fixture(scope="session")
def host_user() -> HostUser:
    """The host's `tapeline` system user, created from the shipped sysusers.d file."""
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    for tool in ("systemd-sysusers", "systemd-tmpfiles", "systemd-analyze", "runuser"):
        require_tool(tool)
    subprocess.run(
        ["systemd-sysusers", str(SYSTEMD_DIR / "tapeline.sysusers")],
        check=True,
        capture_output=True,
        text=True,
    )
    entry = pwd.getpwnam(USER)
    return HostUser(uid=entry.pw_uid, gid=entry.pw_gid)


def _seed_accounts(root: Path) -> None:
    """Give the scratch root the host's tapeline entries (sysusers then keeps them)."""
    etc = root / "etc"
    etc.mkdir(mode=0o755)
    for db in ("passwd", "group"):
        lines = [
            line
            for line in Path("/etc", db).read_text(encoding="utf-8").splitlines()
            if line.startswith(f"{USER}:")
        ]
        (etc / db).write_text("\n".join(lines) + "\n", encoding="utf-8")
        (etc / db).chmod(0o644)


@pytest.fixture(scope="session")
def installed_root(host_user: HostUser) -> Iterator[InstalledRoot]:
    """A scratch root with Tapeline installed by install.sh --root (built once per session)."""
    path = Path(tempfile.mkdtemp(prefix="tapeline-root-", dir="/tmp"))
    try:
        path.chmod(0o755)
        _seed_accounts(path)
        before = source_entries()
        started = time.monotonic()
        result = run_install(path)
        elapsed = time.monotonic() - started
        assert result.returncode == 0, f"install.sh failed:\n{result.stdout}\n{result.stderr}"
        print(f"install.sh --root took {elapsed:.1f} s")  # noqa: T201 - shown with -s
        yield InstalledRoot(
            path=path,
            first_run=result,
            uid=host_user.uid,
            gid=host_user.gid,
            source_entries_before=before,
        )
    finally:
        shutil.rmtree(path, ignore_errors=True)
