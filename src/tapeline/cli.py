"""`tapeline`: argument parsing, and one thin call per subcommand into the modules that do the work.

Exit codes follow sysexits(3): 78 bad config, 77 not allowed, 66 no such record, 74 storage
trouble, 1 a check that found problems (verify), 0 success.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, TextIO

from tapeline import __version__
from tapeline.archive.access import LOCAL_OPERATOR
from tapeline.archive.audit import Actor
from tapeline.archive.core import Archive
from tapeline.config import DEFAULT_CONFIG_PATH, EX_CONFIG, Config, load_config
from tapeline.errors import AccessDenied, ConfigError, NotFound, StorageError, TapelineError

EX_NOINPUT = 66
EX_IOERR = 74
EX_NOPERM = 77
EX_USAGE = 64

Handler = Callable[[argparse.Namespace], int]
KINDS = [
    "call",
    "message",
    "whatsapp_call",
    "orphan_stream",
    "capture_failure",
    "review_resolution",
]


def _out() -> TextIO:
    return sys.stdout


def _err(message: str) -> None:
    sys.stderr.write(f"tapeline: {message}\n")


def _time_arg(value: str, *, end: bool = False) -> datetime:
    """RFC 3339 time (with offset) or a date; a date as --until means the end of that day."""
    try:
        if "T" not in value and " " not in value:
            day = date.fromisoformat(value)
            return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time or date: {value!r}") from exc
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"time needs a UTC offset (e.g. Z): {value!r}")
    return parsed.astimezone(UTC)


def _config(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config))


def _open_archive(args: argparse.Namespace) -> Archive:
    """Open the archive, after reading any password files (they may be readable by root only)."""
    from tapeline.privileges import drop_to_service_user  # noqa: PLC0415

    if getattr(args, "as_user", None) and not hasattr(args, "as_password"):
        args.as_password = _read_password(
            args.password_file, prompt=f"password for {args.as_user}: "
        )
    config = _config(args)
    drop_to_service_user(config.storage.path.parent)
    return Archive.open(config)


def _read_password(file: str | None, *, prompt: str, confirm: bool = False) -> str:
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise TapelineError(f"cannot read {file}: {exc.strerror}") from exc
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != first:
        raise TapelineError("the two passwords differ")
    return first


def _actor(args: argparse.Namespace, archive: Archive) -> Actor:
    """The account named by --as, authenticated with its password (and TOTP)."""
    from tapeline.archive.users import authenticate  # noqa: PLC0415

    if not getattr(args, "as_user", None):
        unix = os.environ.get("SUDO_USER") or getpass.getuser()
        return Actor(name=f"local:{unix}", roles=(LOCAL_OPERATOR,))
    return authenticate(archive, name=args.as_user, password=args.as_password, code=args.totp)


# --- handlers ---------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file."""
    from tapeline.archive.core import check_semantics  # noqa: PLC0415

    config = _config(args)
    check_semantics(config, source=str(args.config))
    _out().write(f"{args.config}: ok (node {config.node.id}, {len(config.lines)} lines)\n")
    return 0


def cmd_key_generate(args: argparse.Namespace) -> int:
    """Create missing key and certificate files (install, demo)."""
    from tapeline.demo import ensure_keys  # noqa: PLC0415

    config = _config(args)
    ensure_keys(config)
    for path in (
        config.storage.key_file,
        config.node.signing_key_file,
        config.web.tls_cert_file,
        config.web.tls_key_file,
    ):
        _out().write(f"{path}: present\n")
    return 0


def cmd_key_export(args: argparse.Namespace) -> int:
    """Write both keys encrypted with a passphrase."""
    from tapeline.archive.keyexport import export_keys  # noqa: PLC0415

    config = _config(args)
    passphrase = _read_password(args.passphrase_file, prompt="export passphrase: ", confirm=True)
    data = export_keys(config.storage.key_file, config.node.signing_key_file, passphrase)
    out = Path(args.out)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    _out().write(f"keys exported to {out}; keep it and its passphrase apart, off this box\n")
    return 0


def cmd_key_import(args: argparse.Namespace) -> int:
    """Write both key files from an escrowed export (a restored or an additional node)."""
    from tapeline.archive.keyexport import import_keys  # noqa: PLC0415

    config = _config(args)
    passphrase = _read_password(args.passphrase_file, prompt="export passphrase: ", confirm=False)
    import_keys(
        Path(args.input).read_bytes(),
        passphrase,
        config.storage.key_file,
        config.node.signing_key_file,
    )
    _out().write(f"keys imported to {config.storage.key_file} and {config.node.signing_key_file}\n")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Node id, version, storage mode, public signing key."""
    from tapeline.archive.crypto import public_key_text  # noqa: PLC0415

    archive = _open_archive(args)
    info = {
        "node_id": archive.node_id,
        "version": __version__,
        "storage_mode": archive.storage_mode,
        "signing_public_key": public_key_text(archive.signing_key),
        "archive_key_id": archive.vault.archive_key.key_id,
        "database": archive.index.engine.url.render_as_string(hide_password=True),
    }
    archive.close()
    if args.json:
        _out().write(json.dumps(info) + "\n")
    else:
        for key, value in info.items():
            _out().write(f"{key}: {value}\n")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """Search and print one JSON object per line."""
    from tapeline.archive.reading import find  # noqa: PLC0415
    from tapeline.archive.records import Filters  # noqa: PLC0415

    archive = _open_archive(args)
    try:
        actor = _actor(args, archive)
        filters = Filters(
            party=args.party,
            line=args.line,
            team=args.team,
            channel=args.channel,
            kind=args.kind,
            since=args.since,
            until=args.until,
            include_hidden=args.all,
            limit=args.limit,
        )
        records = find(archive, actor, filters)
    finally:
        archive.close()
    out = _out()
    for record in records:
        if args.json:
            out.write(json.dumps(record, sort_keys=True) + "\n")
        else:
            party = (record["counterparty"] or {}).get("identifier", "")
            owner = (record["line"] or {}).get("owner", "")
            out.write(
                f"{record['id']}  {record['started_at']}  {record['channel']:8} "
                f"{record['kind']:16} {owner:20} {party}\n"
            )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one record; with --audio write its decrypted recording."""
    from tapeline.archive.reading import show  # noqa: PLC0415

    if args.audio and not args.as_user:
        raise AccessDenied("--audio reads content: name an account with --as")
    out_fd = None
    if args.audio:  # opened before root is dropped, so any folder root can write to works
        try:
            out_fd = os.open(args.audio, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise TapelineError(f"cannot create {args.audio}: {exc.strerror}") from exc
    try:
        archive = _open_archive(args)
        try:
            record, data = show(archive, _actor(args, archive), args.id, audio=out_fd is not None)
        finally:
            archive.close()
        _out().write(json.dumps(record, indent=2, sort_keys=True) + "\n")
        if out_fd is not None and data is not None:
            with os.fdopen(out_fd, "wb", closefd=False) as handle:
                handle.write(data)
            sys.stderr.write(f"recording written to {args.audio}\n")
    except BaseException:
        if out_fd is not None:
            Path(args.audio).unlink(missing_ok=True)
        raise
    finally:
        if out_fd is not None:
            os.close(out_fd)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-hash every object, walk the audit chain."""
    from tapeline.archive.verify import alarm_on_report, verify_archive  # noqa: PLC0415

    archive = _open_archive(args)
    try:
        report = verify_archive(archive)
        alarm_on_report(archive, report)
    finally:
        archive.close()
    out = _out()
    out.write(f"objects checked: {report.objects_checked}\n")
    out.write(f"audit entries checked: {report.audit_entries_checked}\n")
    return _verdict(out, "archive ok", report.problems)


def _verdict(out: TextIO, ok_text: str, problems: Sequence[str]) -> int:
    """Print `ok_text` (exit 0), or the first problem and the rest (exit 1)."""
    if not problems:
        out.write(f"{ok_text}\n")
        return 0
    out.write(f"FIRST PROBLEM: {problems[0]}\n")
    out.writelines(f"also: {problem}\n" for problem in problems[1:])
    return 1


def cmd_restore(args: argparse.Namespace) -> int:
    """Rebuild a clean appliance's index from the replica's record manifests."""
    from tapeline.archive.audit import Actor  # noqa: PLC0415
    from tapeline.archive.rebuild import restore_from_replica  # noqa: PLC0415

    if not args.from_replica:
        raise TapelineError("restore needs --from-replica (the only source it knows)")
    archive = _open_archive(args)
    try:
        # A clean appliance has no accounts yet; the restore is audited as the appliance itself.
        report = restore_from_replica(archive, Actor.system("restore"))
    finally:
        archive.close()
    out = _out()
    out.write(f"records restored: {report.records}\nobjects indexed: {report.objects}\n")
    out.write(f"objects copied to the primary: {report.copied}\n")
    for rid in report.extended:
        out.write(f"retain_until taken from the replica's lock (extended after filing): {rid}\n")
    for rid in report.held_in_store:
        out.write(f"under a legal hold in the replica; place the hold again: {rid}\n")
    for item in report.not_restored:
        out.write(f"not in the manifests, not restored: {item}\n")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    """Create an account."""
    from tapeline.archive.totp import secret_base32  # noqa: PLC0415
    from tapeline.archive.users import add_user  # noqa: PLC0415

    password = _read_password(
        args.password_file_new, prompt=f"new password for {args.name}: ", confirm=True
    )
    archive = _open_archive(args)
    try:
        actor = _actor(args, archive)
        secret = add_user(
            archive,
            name=args.name,
            roles=args.role,
            teams=args.team or [],
            password=password,
            by=actor,
            with_totp=args.totp_enroll,
        )
    finally:
        archive.close()
    _out().write(f"account {args.name} added with roles {', '.join(sorted(set(args.role)))}\n")
    if secret:
        _out().write(f"TOTP secret (enter it in an authenticator app): {secret_base32(secret)}\n")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    """Change a password."""
    from tapeline.archive.users import set_password  # noqa: PLC0415

    password = _read_password(
        args.new_password_file, prompt=f"new password for {args.name}: ", confirm=True
    )
    archive = _open_archive(args)
    try:
        actor = _actor(args, archive)
        set_password(archive, name=args.name, password=password, by=actor)
    finally:
        archive.close()
    _out().write(f"password of {args.name} changed\n")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    """List accounts."""
    from tapeline.archive.users import list_users  # noqa: PLC0415

    archive = _open_archive(args)
    try:
        users = list_users(archive)
    finally:
        archive.close()
    for user in users:
        line = {
            "name": user.name,
            "roles": user.roles,
            "teams": user.teams,
            "totp": user.totp,
            "disabled": user.disabled,
        }
        _out().write(json.dumps(line) + "\n")
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    """Place a real SIPREC call at the configured listener and check the filed recording."""
    from tapeline.daemon.siprec.selftest import check_filed, place_call  # noqa: PLC0415

    config = _config(args)
    try:
        call_id = place_call(config, seconds=args.seconds)
    except (OSError, RuntimeError, ValueError) as exc:
        _out().write(f"selftest FAILED: could not place the call: {exc}\n")
        return 1
    archive = _open_archive(args)
    try:
        result = check_filed(archive, call_id)
    finally:
        archive.close()
    for line in result.lines:
        _out().write(line + "\n")
    _out().write("selftest ok\n" if result.ok else "selftest FAILED\n")
    return 0 if result.ok else 1


def cmd_import_pcap(args: argparse.Namespace) -> int:
    """File every call in capture files, one JSON record per line (the tap's offline mode)."""
    from tapeline.daemon.tap.offline import import_captures, parse_hints  # noqa: PLC0415

    try:
        hints = parse_hints(args.rtp_codec or [], args.srtp_key or [])
    except ValueError as exc:
        _err(str(exc))
        return EX_USAGE
    archive = _open_archive(args)
    try:
        summary = import_captures(
            archive, archive.config, [Path(p) for p in args.captures], _print_json, hints
        )
    finally:
        archive.close()
    counts = summary.counters
    _err(
        f"{summary.filed} records filed; {counts.sip_messages} SIP messages, "
        f"{counts.rtp_routed} RTP packets routed, {counts.orphan_flows} unsignalled RTP flows "
        f"({counts.orphans_ignored} too short for a record), "
        f"{counts.unmatched_udp} other UDP datagrams"
        + (f", {counts.tls_streams} TLS streams (signalling not readable)" if counts.tls_streams
           else "")
    )  # fmt: skip
    return 0


def cmd_recorder(args: argparse.Namespace) -> int:
    """Run the recorder."""
    from tapeline.daemon.logs import setup_logging  # noqa: PLC0415
    from tapeline.daemon.recorder import Recorder  # noqa: PLC0415
    from tapeline.daemon.services import build_services  # noqa: PLC0415
    from tapeline.eventloop import run_async  # noqa: PLC0415

    setup_logging()
    config = _config(args)
    recorder = Recorder(config, config_path=Path(args.config), services=build_services(config))
    run_async(recorder.run())
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """Run the web page."""
    from tapeline.daemon.logs import setup_logging  # noqa: PLC0415
    from tapeline.eventloop import run_async  # noqa: PLC0415
    from tapeline.web.server import serve_web  # noqa: PLC0415

    setup_logging()
    config = _config(args)
    for path in (config.web.tls_cert_file, config.web.tls_key_file):
        if config.web.tls and not path.exists():
            raise ConfigError(str(args.config), "web.tls_cert_file", f"{path} does not exist")
    archive = Archive.open(config, migrate=False)
    try:
        run_async(serve_web(archive))
    finally:
        archive.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run everything in one process on embedded defaults."""
    from tapeline.daemon.logs import setup_logging  # noqa: PLC0415
    from tapeline.demo import DemoPorts, main  # noqa: PLC0415

    setup_logging("WARNING")
    return main(
        Path(args.data_dir),
        DemoPorts(web=args.web_port, status=args.status_port, sip=args.sip_port),
    )


def _scope(args: argparse.Namespace) -> dict[str, object]:
    from tapeline.archive.searches import scope_from  # noqa: PLC0415

    return scope_from(
        party=args.party,
        line=args.line,
        team=args.team,
        channel=args.channel,
        since=args.since,
        until=args.until,
    )


def _print_json(value: object) -> None:
    _out().write(json.dumps(value, sort_keys=True) + "\n")


def cmd_hold(args: argparse.Namespace) -> int:
    """Legal holds: add, list, release (request), approve (a second person)."""
    from tapeline.archive import holds  # noqa: PLC0415

    archive = _open_archive(args)
    try:
        if args.hold_command == "list":
            for hold in holds.list_holds(archive):
                if args.json:
                    _print_json(hold)
                else:
                    _out().write(
                        f"{hold['id']:>4}  {hold['state']:17} {hold['records']:>6} records  "
                        f"{hold['matter']}\n"
                    )
            return 0
        actor = _actor(args, archive)
        if args.hold_command == "add":
            info = holds.place_hold(
                archive, actor, matter=args.matter, scope=_scope(args), saved_search=args.search
            )
            verb = "placed"
        elif args.hold_command == "release":
            info = holds.request_release(archive, actor, matter=args.matter, reason=args.reason)
            verb = "release requested; another legal account must approve"
        else:
            info = holds.approve_release(archive, actor, matter=args.matter)
            verb = "released"
    finally:
        archive.close()
    _out().write(f"hold {info['id']} ({info['matter']}): {verb}; {info['records']} records\n")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    """Supervisory review: flag a record (blocks disposition), resolve it (filed as a record)."""
    from tapeline.archive import review  # noqa: PLC0415

    archive = _open_archive(args)
    try:
        actor = _actor(args, archive)
        if args.review_command == "flag":
            info = review.flag_for_review(archive, actor, args.id, reason=args.reason)
            _out().write(f"{info['id']}: flagged for review ({info['review_flag']})\n")
        else:
            info = review.resolve_review(
                archive, actor, args.id, action=args.action, comment=args.comment
            )
            _out().write(
                f"{info['id']}: resolved ({info['action']}); record {info['resolution']}\n"
            )
    finally:
        archive.close()
    return 0


def cmd_clock(args: argparse.Namespace) -> int:
    """Confirm the current time after a clock jump, lifting the purge suspension."""
    from tapeline.archive.trustedclock import confirm_clock  # noqa: PLC0415

    archive = _open_archive(args)
    try:
        info = confirm_clock(archive, _actor(args, archive), stated=args.time)
    finally:
        archive.close()
    _out().write(
        f"node {info['node_id']}: time confirmed as {info['confirmed_time']}; purging resumes\n"
    )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Saved searches: save, list."""
    from tapeline.archive.searches import list_searches, save_search  # noqa: PLC0415

    archive = _open_archive(args)
    try:
        if args.search_command == "list":
            for item in list_searches(archive):
                _print_json(item)
            return 0
        saved = save_search(archive, _actor(args, archive), name=args.name, scope=_scope(args))
    finally:
        archive.close()
    _out().write(f"saved search {saved['name']}: {json.dumps(saved['filters'])}\n")
    return 0


def _print_extension(result: dict[str, Any]) -> None:
    _out().write(f"retention extended on {len(result['records'])} records\n")
    if result["capped"]:
        _out().write(
            f"{len(result['capped'])} records stop at their class maximum "
            "(a legal hold keeps them longer)\n"
        )


def cmd_retention(args: argparse.Namespace) -> int:
    """Retention: list, propose (class or policy), approve (another person), extend."""
    from tapeline.archive import policies  # noqa: PLC0415

    archive = _open_archive(args)
    try:
        if args.retention_command == "list":
            info = policies.overview(archive)
            if args.json:
                _print_json(info)
            else:
                for cls in info["classes"]:
                    _out().write(
                        f"class  {cls['name']:18} {cls['minimum_days']:>6} days  {cls['rule']}\n"
                    )
                for pol in info["policies"]:
                    _out().write(f"policy {pol['name']:18} -> {pol['class']}  {pol['match']}\n")
                for prop in info["proposals"]:
                    _out().write(f"proposal {prop['id']} {prop['state']}: {prop['payload']}\n")
            return 0
        actor = _actor(args, archive)
        if args.retention_command == "propose":
            if args.policy:
                match = {
                    k: v
                    for k, v in {
                        "line": args.line,
                        "team": args.team,
                        "channel": args.channel,
                        "direction": args.direction,
                        "tag": args.tag,
                    }.items()
                    if v
                }
                payload: dict[str, object] = {
                    "name": args.policy,
                    "class": args.class_name,
                    "match": match,
                }
                kind = policies.KIND_POLICY
            else:
                payload = {
                    "name": args.class_name,
                    "minimum_days": args.minimum_days,
                    "maximum_days": args.maximum_days,
                    "accessible_days": args.accessible_days,
                    "start": args.start,
                    "rule": args.rule or "",
                }
                kind = policies.KIND_CLASS
            result = policies.propose(archive, actor, kind=kind, payload=payload)
            _out().write(f"proposal {result['id']} open; another records manager must approve\n")
        elif args.retention_command == "approve":
            result = policies.approve(archive, actor, args.proposal)
            _out().write(f"proposal {result['id']} approved and in force\n")
        else:
            result = policies.extend(
                archive,
                actor,
                reason=args.reason,
                interaction_id=args.id,
                saved_search=args.search,
                years=args.years,
                until=args.until,
            )
            _print_extension(result)
    finally:
        archive.close()
    return 0


def _purge_mode(args: argparse.Namespace, words: list[str]) -> str | None:
    if words[:1] == ["approve"] and len(words) == 2:  # noqa: PLR2004  # approve BATCH
        return "approve"
    if words == ["list"]:
        return "list"
    if not words and args.dry_run != args.propose:
        return "dry-run" if args.dry_run else "propose"
    return None


def _print_candidates(items: list[dict[str, object]], *, as_json: bool) -> None:
    for item in items:
        if as_json:
            _print_json(item)
        else:
            _out().write(
                f"{item['id']}  {item['started_at']}  {item['kind']!s:16} "
                f"{item['retention_class']!s:16} until {item['retain_until']}\n"
            )
    if not as_json:
        _out().write(f"{len(items)} records would be purged\n")


def cmd_purge(args: argparse.Namespace) -> int:
    """Disposition: --dry-run, --propose, `approve BATCH`, `list`; the recorder executes."""
    from tapeline.archive import purge  # noqa: PLC0415

    words = list(args.words)
    mode = _purge_mode(args, words)
    if mode is None:
        _err("use one of: purge --dry-run | purge --propose | purge approve BATCH | purge list")
        return EX_USAGE
    archive = _open_archive(args)
    try:
        actor = _actor(args, archive)
        if mode == "dry-run":
            from tapeline.archive.trustedclock import is_suspended  # noqa: PLC0415

            if is_suspended(archive):
                _err("purging is suspended after a clock jump: nothing would be deleted")
            _print_candidates(purge.dry_run(archive, actor), as_json=args.json)
        elif mode == "propose":
            batch = purge.propose_batch(archive, actor)
            _out().write(
                f"purge batch {batch['id']} proposed with {len(batch['items'])} records; "
                "another records manager must approve it\n"
            )
        elif mode == "approve":
            batch = purge.approve_batch(archive, actor, words[1])
            _out().write(
                f"purge batch {batch['id']} approved; the recorder executes it after "
                f"{batch['not_before']}\n"
            )
        else:
            for batch in purge.list_batches(archive):
                _print_json(batch)
    finally:
        archive.close()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a signed export bundle of the matching records (export officer)."""
    from tapeline.archive.export import export_records  # noqa: PLC0415
    from tapeline.archive.records import Filters  # noqa: PLC0415

    if not args.as_user:
        raise AccessDenied("export reads content: name an account with --as")
    try:  # opened before root is dropped, so any folder root can write to works
        out_fd = os.open(args.out, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise TapelineError(f"cannot create {args.out}: {exc.strerror}") from exc
    try:
        archive = _open_archive(args)
        try:
            filters = Filters(
                party=args.party,
                line=args.line,
                team=args.team,
                channel=args.channel,
                kind=args.kind,
                since=args.since,
                until=args.until,
                ids=args.id or [],
                region=archive.config.node.default_region,
            )
            with os.fdopen(out_fd, "w+b", closefd=False) as handle:
                summary = export_records(
                    archive, _actor(args, archive), filters, handle, purpose=args.purpose
                )
        finally:
            archive.close()
    except BaseException:
        Path(args.out).unlink(missing_ok=True)
        raise
    finally:
        os.close(out_fd)
    _out().write(
        f"exported {summary.records} records ({summary.files} files) to {args.out}; "
        f"manifest sha256 {summary.manifest_sha256}\n"
    )
    return 0


def cmd_verify_export(args: argparse.Namespace) -> int:
    """Check an export bundle offline; name every changed, missing or extra file."""
    from tapeline.archive.exportcheck import verify_export  # noqa: PLC0415

    report = verify_export(Path(args.zip), expected_key=args.key)
    out = _out()
    out.write(f"records: {report.records}\nfiles checked: {report.files_checked}\n")
    out.write(f"signed by: {report.public_key}\n")
    return _verdict(out, "export ok", report.problems)


def cmd_cdr_import(args: argparse.Namespace) -> int:
    """Import call detail records from a CSV file (docs/cdr.md)."""
    from tapeline.archive.cdr import import_cdrs  # noqa: PLC0415

    try:
        data = Path(args.csv).read_bytes()
    except OSError as exc:
        raise TapelineError(f"cannot read {args.csv}: {exc.strerror}") from exc
    archive = _open_archive(args)
    try:
        result = import_cdrs(archive, _actor(args, archive), data)
    finally:
        archive.close()
    _out().write(f"imported {result.rows} CDRs from {args.csv} (import {result.import_id})\n")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    """The daily reconciliation report: CDRs against recordings, gaps; exit 1 when incomplete."""
    from tapeline.archive.cdr import reconcile  # noqa: PLC0415

    archive = _open_archive(args)
    try:
        report = reconcile(archive, _actor(args, archive), args.date)
    finally:
        archive.close()
    if args.json:
        _print_json(report)
    else:
        out = _out()
        out.write(f"reconciliation {report['date']}\n")
        for line, counts in sorted(report["lines"].items()):
            out.write(
                f"  {line}: {counts['cdrs']} CDRs, {counts['recorded']} recorded, "
                f"{counts['missing']} missing, {counts['short']} short\n"
            )
        for kind in ("missing", "failed", "short", "gaps"):
            for item in report[kind]:
                out.write(f"  {kind.upper()}: {json.dumps(item, sort_keys=True)}\n")
        for item in report["replica"]:
            if item["replica"] != "present":
                out.write(f"  REPLICA MISSING: {item['interaction_id']}\n")
    incomplete = report["missing"] or report["failed"] or report["short"]
    return 1 if incomplete else 0


# --- parser -----------------------------------------------------------------------------------


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=str(DEFAULT_CONFIG_PATH),
        help=f"config file (default {DEFAULT_CONFIG_PATH})",
    )


def _add_actor(parser: argparse.ArgumentParser, *, auth_flag: str = "--password-file") -> None:
    parser.add_argument("--as", dest="as_user", metavar="USER", help="act as this account")
    parser.add_argument(
        auth_flag, dest="password_file", help="read the --as account's password from a file"
    )
    parser.add_argument("--totp", help="the --as account's current TOTP code")


def _add_scope(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--party", help="a number, BSUID or URI of the other party")
    parser.add_argument("--line", help="a recorded line number or its owner")
    parser.add_argument("--team")
    parser.add_argument("--channel", choices=["voice", "whatsapp"])
    parser.add_argument("--since", type=_time_arg, help="RFC 3339 time or date")
    parser.add_argument(
        "--until", type=lambda v: _time_arg(v, end=True), help="RFC 3339 time or date"
    )


def _add_hold_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hold = sub.add_parser("hold", help="legal holds")
    hold_sub = hold.add_subparsers(dest="hold_command", required=True)
    h_add = hold_sub.add_parser("add", help="place a hold on a matter (legal)")
    h_add.add_argument("--matter", required=True)
    _add_scope(h_add)
    h_add.add_argument("--search", help="a saved search the hold covers")
    h_list = hold_sub.add_parser("list", help="every hold (the hold report)")
    h_list.add_argument("--json", action="store_true")
    h_rel = hold_sub.add_parser("release", help="request a release (legal, with a reason)")
    h_rel.add_argument("--matter", required=True)
    h_rel.add_argument("--reason", required=True)
    h_ok = hold_sub.add_parser("approve", help="approve a requested release (another legal user)")
    h_ok.add_argument("--matter", required=True)
    for p in (h_add, h_list, h_rel, h_ok):
        p.set_defaults(handler=cmd_hold)
        _add_config(p)
        _add_actor(p)

    search = sub.add_parser("search", help="saved searches")
    search_sub = search.add_subparsers(dest="search_command", required=True)
    s_save = search_sub.add_parser("save", help="store a search under a name")
    s_save.add_argument("--name", required=True)
    _add_scope(s_save)
    s_list = search_sub.add_parser("list", help="every saved search")
    for p in (s_save, s_list):
        p.set_defaults(handler=cmd_search)
        _add_config(p)
        _add_actor(p)


def _add_retention_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ret = sub.add_parser("retention", help="retention classes, policies and extensions")
    ret_sub = ret.add_subparsers(dest="retention_command", required=True)
    r_list = ret_sub.add_parser("list", help="classes, policies in force, proposals")
    r_list.add_argument("--json", action="store_true")
    r_prop = ret_sub.add_parser("propose", help="propose a class, or with --policy a policy")
    r_prop.add_argument("--class", dest="class_name", required=True, help="the class")
    r_prop.add_argument("--minimum-days", type=int)
    r_prop.add_argument("--maximum-days", type=int)
    r_prop.add_argument("--accessible-days", type=int)
    r_prop.add_argument("--start", choices=["creation", "fiscal-year-end", "event"])
    r_prop.add_argument("--rule", help="the regulation the class implements")
    r_prop.add_argument("--policy", metavar="NAME", help="propose a policy giving --class")
    r_prop.add_argument("--line")
    r_prop.add_argument("--team")
    r_prop.add_argument("--channel", choices=["voice", "whatsapp"])
    r_prop.add_argument("--direction", choices=["inbound", "outbound", "internal"])
    r_prop.add_argument("--tag")
    r_ok = ret_sub.add_parser("approve", help="approve a proposal (another records manager)")
    r_ok.add_argument("proposal", type=int)
    r_ext = ret_sub.add_parser("extend", help="lengthen retention of a record or saved search")
    target = r_ext.add_mutually_exclusive_group(required=True)
    target.add_argument("--id", help="an interaction id")
    target.add_argument("--search", help="a saved search (also covers later matches)")
    when = r_ext.add_mutually_exclusive_group(required=True)
    when.add_argument("--years", type=float, help="keep at least this long from each start")
    when.add_argument("--until", type=lambda v: _time_arg(v, end=True), help="keep until then")
    r_ext.add_argument("--reason", required=True)
    for p in (r_list, r_prop, r_ok, r_ext):
        p.set_defaults(handler=cmd_retention)
        _add_config(p)
        _add_actor(p)


def _add_review_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rev = sub.add_parser("review", help="supervisory review flags and their resolutions")
    rev_sub = rev.add_subparsers(dest="review_command", required=True)
    flag = rev_sub.add_parser("flag", help="flag a record for review (blocks its disposition)")
    flag.add_argument("id", help="an interaction id")
    flag.add_argument("--reason", required=True)
    res = rev_sub.add_parser("resolve", help="resolve a flag; the resolution is filed as a record")
    res.add_argument("id", help="the flagged interaction id")
    res.add_argument("--action", required=True, help="what was decided (e.g. no-further-action)")
    res.add_argument("--comment", required=True)
    for p in (flag, res):
        p.set_defaults(handler=cmd_review)
        _add_config(p)
        _add_actor(p)

    clock = sub.add_parser("clock", help="the trusted clock that purging relies on")
    clock_sub = clock.add_subparsers(dest="clock_command", required=True)
    confirm = clock_sub.add_parser(
        "confirm", help="confirm the time after a clock jump (admin or records manager)"
    )
    confirm.add_argument(
        "--time",
        type=_time_arg,
        help="the current time read from an independent source (RFC 3339); "
        "refused if the system clock disagrees by more than retention.max_clock_jump_s",
    )
    confirm.set_defaults(handler=cmd_clock)
    _add_config(confirm)
    _add_actor(confirm)


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915  # the whole CLI in one view
    """The whole command line."""
    parser = argparse.ArgumentParser(prog="tapeline", description="Tapeline recording appliance")
    parser.add_argument("--version", action="version", version=f"tapeline {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    _add_config(add("recorder", cmd_recorder, "run the recorder (systemd unit)"))
    _add_config(add("web", cmd_web, "run the web page (systemd unit)"))
    demo = add("demo", cmd_demo, "run recorder and web in one process on embedded defaults")
    demo.add_argument("--data-dir", default="./tapeline-data")
    demo.add_argument("--web-port", type=int, default=8443)
    demo.add_argument("--status-port", type=int, default=9780)
    demo.add_argument("--sip-port", type=int, default=5060)
    _add_config(add("check-config", cmd_check_config, "validate a config file (exit 78 if bad)"))
    info = add("info", cmd_info, "node id, version, storage mode, public signing key")
    _add_config(info)
    info.add_argument("--json", action="store_true")

    query = add("query", cmd_query, "search interactions")
    _add_config(query)
    _add_actor(query)
    query.add_argument("--party", help="a number, BSUID or URI of the other party")
    query.add_argument("--line", help="a recorded line number or its owner")
    query.add_argument("--team")
    query.add_argument("--channel", choices=["voice", "whatsapp"])
    query.add_argument("--kind", choices=KINDS)
    query.add_argument("--since", type=_time_arg, help="RFC 3339 time or date")
    query.add_argument(
        "--until", type=lambda v: _time_arg(v, end=True), help="RFC 3339 time or date"
    )
    query.add_argument("--all", action="store_true", help="include hidden (selftest) records")
    query.add_argument("--limit", type=int)
    query.add_argument("--json", action="store_true", help="one JSON object per line")

    show = add("show", cmd_show, "print one interaction; --audio writes its recording")
    _add_config(show)
    _add_actor(show)
    show.add_argument("id")
    show.add_argument("--audio", metavar="OUT")

    imp = add("import-pcap", cmd_import_pcap, "file every call found in pcap/pcapng captures")
    tap = add("tap", lambda _a: EX_USAGE, "the passive tap")
    tap_import = tap.add_subparsers(dest="tap_command", required=True).add_parser(
        "import", help="same as import-pcap"
    )
    tap_import.set_defaults(handler=cmd_import_pcap)
    for p in (imp, tap_import):
        _add_config(p)
        p.add_argument("captures", nargs="+", metavar="CAPTURE")
        p.add_argument(
            "--rtp-codec",
            action="append",
            metavar="DST_ADDR:PORT=NAME[/RATE]",
            help="codec of an RTP flow that has no SDP (repeatable)",
        )
        p.add_argument(
            "--srtp-key",
            action="append",
            metavar="DST_ADDR:PORT=BASE64",
            help="AES_CM_128_HMAC_SHA1_80 key of a flow keyed out of band (repeatable)",
        )

    _add_config(add("verify", cmd_verify, "re-hash every object and walk the audit chain"))
    restore = add("restore", cmd_restore, "rebuild a clean appliance's index from its replica")
    _add_config(restore)
    restore.add_argument(
        "--from-replica",
        action="store_true",
        help="read the record manifests from storage.replica_* (or the primary if none is set)",
    )
    selftest = add("selftest", cmd_selftest, "place a SIPREC test call and check its recording")
    _add_config(selftest)
    selftest.add_argument("--seconds", type=float, default=2.0, help="length of the test call")

    key = add("key", lambda _a: EX_USAGE, "appliance keys")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    generate = key_sub.add_parser("generate", help="create missing key and certificate files")
    generate.set_defaults(handler=cmd_key_generate)
    _add_config(generate)
    export = key_sub.add_parser("export", help="write both keys encrypted with a passphrase")
    export.set_defaults(handler=cmd_key_export)
    _add_config(export)
    export.add_argument("--out", required=True)
    export.add_argument("--passphrase-file")
    key_import = key_sub.add_parser("import", help="write both key files from an export")
    key_import.set_defaults(handler=cmd_key_import)
    _add_config(key_import)
    key_import.add_argument("--in", dest="input", required=True)
    key_import.add_argument("--passphrase-file")

    user = add("user", lambda _a: EX_USAGE, "appliance accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    u_add = user_sub.add_parser("add", help="create an account")
    u_add.set_defaults(handler=cmd_user_add)
    _add_config(u_add)
    _add_actor(u_add, auth_flag="--as-password-file")
    u_add.add_argument("name")
    u_add.add_argument(
        "--role",
        action="append",
        required=True,
        help="admin, records-manager, legal, reviewer, supervisor, auditor, "
        "export-officer (repeatable)",
    )
    u_add.add_argument("--team", action="append", help="team (repeatable; for supervisors)")
    u_add.add_argument("--password-file", dest="password_file_new", help="the new password")
    u_add.add_argument("--enroll-totp", dest="totp_enroll", action="store_true")
    passwd = user_sub.add_parser("passwd", help="change a password")
    passwd.set_defaults(handler=cmd_user_passwd)
    _add_config(passwd)
    _add_actor(passwd, auth_flag="--as-password-file")
    passwd.add_argument("name")
    passwd.add_argument("--new-password-file")
    u_list = user_sub.add_parser("list", help="list accounts")
    u_list.set_defaults(handler=cmd_user_list)
    _add_config(u_list)
    _add_hold_commands(sub)
    _add_retention_commands(sub)
    _add_review_commands(sub)
    export = add("export", cmd_export, "write a signed export bundle (export officer)")
    _add_config(export)
    _add_actor(export)
    export.add_argument("--out", required=True, metavar="ZIP")
    _add_scope(export)
    export.add_argument("--kind", choices=KINDS)
    export.add_argument("--id", action="append", help="an interaction id (repeatable)")
    export.add_argument("--purpose", help="why (kept in the audit entry and the manifest)")
    cdr = add("cdr", lambda _a: EX_USAGE, "call detail records")
    cdr_sub = cdr.add_subparsers(dest="cdr_command", required=True)
    c_imp = cdr_sub.add_parser("import", help="import a CDR CSV (start,end,from,to,call_id,line)")
    c_imp.set_defaults(handler=cmd_cdr_import)
    _add_config(c_imp)
    _add_actor(c_imp)
    c_imp.add_argument("csv")
    rec = add("reconcile", cmd_reconcile, "daily reconciliation of CDRs against recordings")
    _add_config(rec)
    _add_actor(rec)
    rec.add_argument("--date", required=True, type=date.fromisoformat, help="UTC day, YYYY-MM-DD")
    rec.add_argument("--json", action="store_true")
    vexp = add("verify-export", cmd_verify_export, "check an export bundle offline")
    vexp.add_argument("zip")
    vexp.add_argument("--key", help="the expected signing key (ed25519:..., from tapeline info)")
    purge = add("purge", cmd_purge, "dispose of expired, unheld records (two people, grace)")
    purge.add_argument("words", nargs="*", metavar="approve BATCH | list")
    purge.add_argument("--dry-run", action="store_true", help="list what a purge would take")
    purge.add_argument("--propose", action="store_true", help="propose a batch of those records")
    purge.add_argument("--json", action="store_true")
    _add_config(purge)
    _add_actor(purge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911  # one exit code per error class
    """Entry point of the `tapeline` console script."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        _err(str(exc))
        return EX_CONFIG
    except AccessDenied as exc:
        _err(f"not allowed: {exc}")
        return EX_NOPERM
    except NotFound as exc:
        _err(str(exc))
        return EX_NOINPUT
    except StorageError as exc:
        _err(str(exc))
        return EX_IOERR
    except TapelineError as exc:
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `tapeline query --json | head`: the reader left. What was filed stays filed; say it
        # the shell way (128 + SIGPIPE) without a traceback, and keep Python's exit-time flush
        # from raising again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
