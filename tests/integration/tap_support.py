"""Live tap test helpers: a recorder in a network namespace, its filed records, /metrics."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tapeline.archive.core import Archive
from tapeline.archive.records import Filters, search
from tapeline.config import load_config

Summary = tuple[str, str, list[int]]
A_ADDR, B_ADDR = "10.203.0.1", "10.203.0.2"


def in_ns(netns: str, *argv: str) -> list[str]:
    """`argv` run inside network namespace `netns` (`ip netns exec` execs: same PID)."""
    return ["ip", "netns", "exec", netns, *argv]


def start_recorder(netns: str, config_path: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    """The recorder in the namespace; READY=1 comes on a notify socket (paths cross namespaces)."""
    notify = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(1)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify)}
    with (tmp_path / "recorder.log").open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            in_ns(netns, sys.executable, "-m", "tapeline.cli", "recorder", "-c", str(config_path)),
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if b"READY=1" in listener.recv(4096):
                    break
            except TimeoutError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                log_text = (tmp_path / "recorder.log").read_text()[-3000:]
                pytest.fail(f"recorder did not become ready: {log_text}")
    finally:
        listener.close()
    return proc


def all_records(config_path: Path) -> list[dict[str, Any]]:
    """Every record in the archive of `config_path`, hidden ones included."""
    archive = Archive.open(load_config(config_path, environ={}), migrate=False)
    try:
        with archive.index.read() as session:
            return list(search(session, Filters(include_hidden=True)))
    finally:
        archive.close()


def wait_filed(config_path: Path, call_id: str) -> dict[str, Any]:
    """The record of the call with SIP Call-ID `call_id`, once it is filed (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [r for r in all_records(config_path) if r["source"]["sip_call_id"] == call_id]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"call {call_id} was not filed")


def metrics(netns: str, config_path: Path) -> dict[str, float]:
    """The recorder's `tapeline_tap_*` figures from its /metrics (fetched inside `netns`)."""
    address = load_config(config_path, environ={}).node.status_listen
    code = f"import urllib.request;print(urllib.request.urlopen('http://{address}/metrics').read().decode())"
    text = subprocess.run(
        in_ns(netns, sys.executable, "-c", code), capture_output=True, text=True, check=True
    ).stdout
    values = {}
    for line in text.splitlines():
        if line.startswith("tapeline_tap_"):
            name, value = line.split()
            values[name] = float(value)
    return values


def summary(record: dict[str, Any]) -> Summary:
    """What a live recording and `import-pcap` must agree on: kind, Call-ID, RTP packet counts."""
    packets = sorted(s["quality"]["rtp_packets"] for s in record["streams"])
    return record["kind"], record["source"]["sip_call_id"] or "", packets


def import_pcap(config_path: Path, capture: Path) -> list[dict[str, Any]]:
    """The records `tapeline import-pcap` files from `capture` (its JSON lines)."""
    imported = subprocess.run(
        [sys.executable, "-m", "tapeline.cli", "import-pcap", "-c", str(config_path),
         str(capture)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in imported.stdout.splitlines()]


@dataclass(frozen=True, slots=True)
class Span:
    """The namespaces: `a` and `b` on the mirrored link, `rec` on the span port `spanR`."""

    a: str
    b: str
    rec: str


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@contextmanager
def span_link(prefix: str) -> Iterator[Span]:
    """Namespaces `PREFIX-a`, `-b`, `-rec` and a mirrored link; removed on exit, also on failure.

    A veth link `vA` (A_ADDR, in `-a`) - `vB` (B_ADDR, in `-b`) whose both directions tc mirrors
    to the span port `spanR` in `-rec`.

    The mirror: a `clsact` qdisc on `vA` (its ingress and egress hooks; this kernel has `ingress`
    and `htb` but neither `prio` nor `matchall`) with a match-all u32 filter on each hook whose
    action is `mirred egress mirror dev spanA`; `spanA`'s peer is `spanR`.
    """
    names = Span(f"{prefix}-a", f"{prefix}-b", f"{prefix}-rec")
    created: list[str] = []
    try:
        for name in (names.a, names.b, names.rec):
            _run("ip", "netns", "add", name)
            created.append(name)
            _run("ip", "-n", name, "link", "set", "lo", "up")
            # No IPv6 chatter (router solicitations, MLD) from the namespaces' own stacks.
            for scope in ("all", "default"):
                _run(*in_ns(name, "sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1"))
        _run("ip", "-n", names.a, "link", "add", "vA", "type", "veth", "peer", "name", "vB",
             "netns", names.b)  # fmt: skip
        _run("ip", "-n", names.a, "link", "add", "spanA", "type", "veth", "peer", "name",
             "spanR", "netns", names.rec)  # fmt: skip
        _run("ip", "-n", names.a, "addr", "add", f"{A_ADDR}/24", "dev", "vA")
        _run("ip", "-n", names.b, "addr", "add", f"{B_ADDR}/24", "dev", "vB")
        for ns, link in (
            (names.a, "vA"),
            (names.a, "spanA"),
            (names.b, "vB"),
            (names.rec, "spanR"),
        ):
            _run("ip", "-n", ns, "link", "set", link, "up")
        _run("tc", "-n", names.a, "qdisc", "add", "dev", "vA", "clsact")
        for hook in ("ingress", "egress"):
            _run("tc", "-n", names.a, "filter", "add", "dev", "vA", hook, "protocol", "all", "u32",
                 "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev",
                 "spanA")  # fmt: skip
        yield names
    finally:
        for name in reversed(created):
            subprocess.run(["ip", "netns", "del", name], check=False)


@contextmanager
def loopback_netns(prefix: str) -> Iterator[str]:
    """A fresh network namespace with only `lo` up, removed on exit (also on failure)."""
    name = f"{prefix}-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(in_ns(name, "ip", "link", "set", "lo", "up"), check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def sox_tone(freq: float, seconds: float, encoding: str) -> bytes:
    """A sine tone from sox as raw 8 kHz G.711 (`encoding` "al" for A-law, "ul" for μ-law)."""
    return subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-t", encoding, "-", "synth", str(seconds), "sine",
         str(freq), "gain", "-6"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip


def sox_decode(g711: bytes, encoding: str) -> np.ndarray:
    """Sox's own decoding of raw G.711 to 16-bit samples: the oracle for recorded audio."""
    raw = subprocess.run(
        ["sox", "-t", encoding, "-r", "8000", "-c", "1", "-", "-t", "s16", "-"],
        input=g711, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, dtype="<i2")
