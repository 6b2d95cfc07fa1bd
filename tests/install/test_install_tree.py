"""install.sh into a scratch root: its tree, idempotence, kept config, refusals, uninstall."""

from __future__ import annotations

import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.install.conftest import (
    INSTALL_SH,
    REPO,
    UNINSTALL_SH,
    InstalledRoot,
    run_install,
    source_entries,
    tree_listing,
    venv_listing,
)

pytestmark = pytest.mark.slow

ROOT_UID = 0

# path -> (mode, owner, group); "T" is the tapeline account.
EXPECTED: dict[str, tuple[int, str, str]] = {
    "/etc/tapeline": (0o750, "root", "T"),
    "/etc/tapeline/tapeline.toml": (0o640, "root", "T"),
    "/etc/tapeline/keys": (0o750, "root", "T"),
    "/etc/tapeline/keys/archive.key": (0o640, "root", "T"),
    "/etc/tapeline/keys/signing.key": (0o640, "root", "T"),
    "/etc/tapeline/tls": (0o750, "root", "T"),
    "/etc/tapeline/tls/web.crt": (0o640, "root", "T"),
    "/etc/tapeline/tls/web.key": (0o640, "root", "T"),
    "/var/lib/tapeline": (0o750, "T", "T"),
    "/var/lib/tapeline/objects": (0o750, "T", "T"),
    "/var/lib/tapeline/spool": (0o700, "T", "T"),
    "/var/lib/tapeline/index": (0o750, "T", "T"),
    "/opt/tapeline": (0o755, "root", "root"),
    "/opt/tapeline/venv": (0o755, "root", "root"),
    "/opt/tapeline/.install-stamp": (0o644, "root", "root"),
    "/etc/systemd/system/tapeline-recorder.service": (0o644, "root", "root"),
    "/etc/systemd/system/tapeline-web.service": (0o644, "root", "root"),
    "/etc/sysctl.d/60-tapeline.conf": (0o644, "root", "root"),
    "/usr/lib/sysusers.d/tapeline.conf": (0o644, "root", "root"),
    "/usr/lib/tmpfiles.d/tapeline.conf": (0o644, "root", "root"),
}


def _outside_venv(root: InstalledRoot) -> dict[str, tuple[str, int, int, str]]:
    return tree_listing(root.path, skip=(root.venv,))


def test_tree_paths_owners_modes(installed_root: InstalledRoot) -> None:
    ids = {"root": ROOT_UID, "T": installed_root.uid}
    gids = {"root": ROOT_UID, "T": installed_root.gid}
    for path, (mode, owner, group) in EXPECTED.items():
        st = installed_root.host_path(path).lstat()
        assert stat.S_IMODE(st.st_mode) == mode, f"{path}: mode {oct(st.st_mode)}"
        assert st.st_uid == ids[owner], f"{path}: uid {st.st_uid}"
        assert st.st_gid == gids[group], f"{path}: gid {st.st_gid}"


def test_shipped_files_installed_verbatim(installed_root: InstalledRoot) -> None:
    pairs = {
        "systemd/tapeline-recorder.service": "/etc/systemd/system/tapeline-recorder.service",
        "systemd/tapeline-web.service": "/etc/systemd/system/tapeline-web.service",
        "systemd/60-tapeline-sysctl.conf": "/etc/sysctl.d/60-tapeline.conf",
        "systemd/tapeline.sysusers": "/usr/lib/sysusers.d/tapeline.conf",
        "systemd/tapeline.tmpfiles": "/usr/lib/tmpfiles.d/tapeline.conf",
        "config/tapeline.toml": "/etc/tapeline/tapeline.toml",
    }
    for src, dst in pairs.items():
        assert (REPO / src).read_bytes() == installed_root.host_path(dst).read_bytes(), dst


def test_venv_built_from_debian_python_and_swapped_in(installed_root: InstalledRoot) -> None:
    venv = installed_root.venv
    cfg = (venv / "pyvenv.cfg").read_text(encoding="utf-8")
    assert "home = /usr/bin" in cfg
    assert "/root" not in cfg
    assert (venv / "bin" / "python").resolve().is_relative_to("/usr/bin")
    script = (venv / "bin" / "tapeline").read_text(encoding="utf-8")
    assert script.startswith(f"#!{venv}/bin/python"), script.splitlines()[0]
    assert not installed_root.host_path("/opt/tapeline/venv.new").exists()
    assert not installed_root.host_path("/opt/tapeline/venv.old").exists()
    stamp = installed_root.host_path("/opt/tapeline/.install-stamp").read_text(encoding="utf-8")
    assert stamp.startswith("source=")
    assert "python=" in stamp
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version in stamp


def test_installer_left_the_source_tree_clean(installed_root: InstalledRoot) -> None:
    assert source_entries() == installed_root.source_entries_before


def test_second_run_changes_nothing(installed_root: InstalledRoot) -> None:
    before = _outside_venv(installed_root)
    venv_before = venv_listing(installed_root.venv)
    result = run_install(installed_root.path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "venv kept" in result.stdout
    assert "wrote " not in result.stdout
    assert _outside_venv(installed_root) == before
    assert venv_listing(installed_root.venv) == venv_before


def test_edited_config_is_kept_and_new_default_lands_as_dist(installed_root: InstalledRoot) -> None:
    config = installed_root.host_path("/etc/tapeline/tapeline.toml")
    dist = config.with_name("tapeline.toml.dist")
    original = config.read_bytes()
    edited = original + b"\n# edited by the admin\n"
    config.write_bytes(edited)
    try:
        result = run_install(installed_root.path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert config.read_bytes() == edited
        assert dist.read_bytes() == (REPO / "config" / "tapeline.toml").read_bytes()
        assert stat.S_IMODE(dist.stat().st_mode) == 0o640
        assert "tapeline.toml.dist" in result.stdout
    finally:
        config.write_bytes(original)
    result = run_install(installed_root.path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not dist.exists()


def test_existing_keys_never_overwritten(installed_root: InstalledRoot) -> None:
    key = installed_root.host_path("/etc/tapeline/keys/signing.key")
    before = key.read_bytes()
    result = run_install(installed_root.path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert key.read_bytes() == before


def test_refuses_non_root() -> None:
    # `nobody` must be able to read the script: a checkout (or pytest's tmp_path) may sit under
    # a 0700 folder, which would fail with "Permission denied" before the check we test.
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:  # world-traversable
        folder = Path(scratch)
        folder.chmod(0o755)
        script = folder / "install.sh"
        shutil.copyfile(INSTALL_SH, script)
        script.chmod(0o755)
        result = subprocess.run(
            ["runuser", "-u", "nobody", "--", "bash", str(script), "--root", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
    assert result.returncode != 0
    assert "must run as root" in result.stderr


def test_refuses_old_python(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text(
        '#!/bin/sh\nif [ "$1" = -V ]; then echo "Python 3.10.12"; exit 0; fi\nexit 1\n',
        encoding="utf-8",
    )
    fake.chmod(0o755)
    root = tmp_path / "root"
    root.mkdir()
    result = run_install(root, "--python", str(fake))
    assert result.returncode != 0
    assert "Python >= 3.11 required" in result.stderr
    assert "3.10.12" in result.stderr
    assert not (root / "opt").exists()


def test_uninstall_keeps_data_unless_purge_yes(installed_root: InstalledRoot) -> None:
    copy = Path(tempfile.mkdtemp(prefix="tapeline-uninstall-", dir="/tmp"))
    try:
        shutil.copytree(installed_root.path, copy, symlinks=True, dirs_exist_ok=True)
        result = run_install(copy, script=UNINSTALL_SH)
        assert result.returncode == 0, result.stdout + result.stderr
        for gone in (
            "opt/tapeline",
            "etc/systemd/system/tapeline-recorder.service",
            "etc/systemd/system/tapeline-web.service",
            "etc/sysctl.d/60-tapeline.conf",
            "usr/lib/sysusers.d/tapeline.conf",
            "usr/lib/tmpfiles.d/tapeline.conf",
        ):
            assert not (copy / gone).exists(), gone
        for kept in (
            "etc/tapeline/keys/archive.key",
            "etc/tapeline/tapeline.toml",
            "var/lib/tapeline",
        ):
            assert (copy / kept).exists(), kept

        refused = run_install(copy, "--purge", script=UNINSTALL_SH)
        assert refused.returncode != 0
        assert "--yes" in refused.stderr
        assert (copy / "var/lib/tapeline").exists()

        purged = run_install(copy, "--purge", "--yes", script=UNINSTALL_SH)
        assert purged.returncode == 0, purged.stdout + purged.stderr
        assert not (copy / "var/lib/tapeline").exists()
        assert not (copy / "etc/tapeline").exists()
        assert "tapeline:" in (copy / "etc/passwd").read_text(encoding="utf-8")
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_sysusers_creates_the_account_in_an_empty_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(
        ["systemd-sysusers", "--root", str(tmp_path), str(REPO / "systemd" / "tapeline.sysusers")],
        check=True,
        capture_output=True,
    )
    passwd = (tmp_path / "etc" / "passwd").read_text(encoding="utf-8")
    (entry,) = [line for line in passwd.splitlines() if line.startswith("tapeline:")]
    fields = entry.split(":")
    assert int(fields[2]) < 1000  # a system account
    assert fields[5] == "/var/lib/tapeline"
    assert fields[6] == "/usr/sbin/nologin"
    group = (tmp_path / "etc" / "group").read_text(encoding="utf-8")
    assert any(line.startswith(f"tapeline:x:{fields[3]}:") for line in group.splitlines())


def test_changed_sources_rebuild_the_venv_and_swap_it_in(installed_root: InstalledRoot) -> None:
    stamp = installed_root.host_path("/opt/tapeline/.install-stamp")
    real = stamp.read_text(encoding="utf-8")
    key = installed_root.host_path("/etc/tapeline/keys/archive.key").read_bytes()
    old_python = (installed_root.venv / "pyvenv.cfg").stat().st_ino
    stamp.write_text(real.replace("source=", "source=older-"), encoding="utf-8")
    result = run_install(installed_root.path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "new venv swapped in" in result.stdout
    assert stamp.read_text(encoding="utf-8") == real
    assert (installed_root.venv / "pyvenv.cfg").stat().st_ino != old_python
    assert not installed_root.host_path("/opt/tapeline/venv.new").exists()
    assert not installed_root.host_path("/opt/tapeline/venv.old").exists()
    script = (installed_root.venv / "bin" / "tapeline").read_text(encoding="utf-8")
    assert script.startswith(f"#!{installed_root.venv}/bin/python")
    assert "venv.new" not in (installed_root.venv / "bin" / "activate").read_text(encoding="utf-8")
    version = subprocess.run(
        [str(installed_root.venv / "bin" / "tapeline"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert version.returncode == 0, version.stderr
    assert installed_root.host_path("/etc/tapeline/keys/archive.key").read_bytes() == key
