"""The typed configuration and its loader.

One TOML file (default `/etc/tapeline/tapeline.toml`), sections as DESIGN §7. Every key can be
overridden by an environment variable `TAPELINE_<SECTION>__<KEY>` whose value is read as JSON when
it parses as JSON and as a plain string otherwise. Errors name the file, the dotted key and the
reason, and the CLI turns them into exit code 78 (EX_CONFIG).

Secrets are never inline: the config names files. A relative secret path is looked up in
`$CREDENTIALS_DIRECTORY` first (systemd `LoadCredential=`), so units need no absolute paths.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tapeline.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/tapeline/tapeline.toml")
ENV_PREFIX = "TAPELINE_"
EX_CONFIG = 78
MAX_PORT = 65535
MIN_UNPRIVILEGED_PORT = 1024

_LISTEN_SCHEMES = ("udp", "tcp", "tls")


def _split_host_port(value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    port = int(port_text)
    if not 0 <= port <= MAX_PORT:
        raise ValueError(f"port {port} out of range")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host, port


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeConfig(_Section):
    """`[node]`: who this box is."""

    id: str = Field(
        default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
    )
    status_listen: str = "127.0.0.1:9780"
    default_region: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    signing_key_file: Path = Path("/etc/tapeline/keys/signing.key")

    @field_validator("status_listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        _split_host_port(value)
        return value

    @property
    def status_address(self) -> tuple[str, int]:
        """The (host, port) of the loopback status listener."""
        return _split_host_port(self.status_listen)


class StorageConfig(_Section):
    """`[storage]`: where objects and journals live and how recordings are encoded."""

    backend: Literal["local", "s3"] = "local"
    path: Path = Path("/var/lib/tapeline/objects")
    spool: Path = Path("/var/lib/tapeline/spool")
    format: Literal["flac", "opus"] = "flac"
    key_file: Path = Path("/etc/tapeline/keys/archive.key")
    min_free_bytes: int = Field(default=1 << 30, ge=0)
    # backend = "s3": an S3 Object Lock bucket (COMPLIANCE mode), reported `worm-external:<bucket>`
    s3_endpoint: str | None = None
    s3_bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    s3_region: str = "us-east-1"
    s3_access_key_file: Path | None = None
    s3_secret_key_file: Path | None = None
    s3_ca_file: Path | None = None
    # The second copy (a duplicate stored separately): another bucket on the same endpoint with
    # the same credentials, or a local folder; written with the same retention and holds.
    replica_bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    replica_path: Path | None = None

    @field_validator("s3_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class DatabaseConfig(_Section):
    """`[database]`: the index (SQLite by default, PostgreSQL by URL)."""

    url: str = "sqlite:////var/lib/tapeline/index/tapeline.db"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return value


class SiprecConfig(_Section):
    """`[siprec]`: the SIPREC / fork listener."""

    listen: list[str] = Field(default_factory=lambda: ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"])
    rtp_ports: str = "20000-29999"
    media_address: str | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    party_headers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_tls(self) -> SiprecConfig:
        if any(entry.startswith("tls:") for entry in self.listen) and not (
            self.tls_cert_file and self.tls_key_file
        ):
            raise ValueError("a tls: listener needs siprec.tls_cert_file and siprec.tls_key_file")
        return self

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, values: list[str]) -> list[str]:
        for value in values:
            scheme, sep, rest = value.partition(":")
            if not sep or scheme not in _LISTEN_SCHEMES:
                msg = f"{value!r}: expected udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT"
                raise ValueError(msg)
            _split_host_port(rest)
        return values

    @field_validator("rtp_ports")
    @classmethod
    def _check_ports(cls, value: str) -> str:
        low, sep, high = value.partition("-")
        if not sep or not low.isdigit() or not high.isdigit():
            raise ValueError(f"expected LOW-HIGH, got {value!r}")
        if not MIN_UNPRIVILEGED_PORT <= int(low) < int(high) <= MAX_PORT:
            raise ValueError(f"{value!r}: need 1024 <= LOW < HIGH <= 65535")
        return value

    @property
    def rtp_port_range(self) -> tuple[int, int]:
        """The inclusive RTP port range."""
        low, _, high = self.rtp_ports.partition("-")
        return int(low), int(high)


class TapConfig(_Section):
    """`[tap]`: passive capture from mirror ports."""

    interfaces: list[str] = Field(default_factory=list)
    filter: str = "udp or tcp"
    sip_ports: list[int] = Field(default_factory=lambda: [5060])
    media_timeout_s: float = Field(default=60.0, gt=0)
    buffer_mb: int = Field(default=64, ge=1, le=4096)
    orphan_min_packets: int = Field(default=50, ge=1)

    @field_validator("sip_ports")
    @classmethod
    def _check_sip_ports(cls, values: list[int]) -> list[int]:
        for port in values:
            if not 1 <= port <= MAX_PORT:
                raise ValueError(f"{port}: a port is 1-65535")
        return values

    @model_validator(mode="after")
    def _check_filter(self) -> TapConfig:
        # Compiled by libpcap now, so `check-config` (exit 78) rejects what the kernel would.
        if self.interfaces:
            from tapeline.daemon.tap.bpf import compile_filter  # noqa: PLC0415  # tap only

            compile_filter(self.filter)  # FilterError is a ValueError: a validation error
        return self


class WhatsappConfig(_Section):
    """`[whatsapp]`: the webhook listener and the Graph API."""

    listen: str | None = None
    app_secret_file: Path | None = None
    verify_token_file: Path | None = None
    access_token_file: Path | None = None
    graph_base_url: str = "https://graph.facebook.com/v21.0"
    max_body_bytes: int = Field(default=3 * 1024 * 1024, gt=0)
    media_retry_base_s: float = Field(default=30.0, gt=0)
    media_expiry_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    media_timeout_s: float = Field(default=60.0, gt=0)
    send_proxy_tokens_file: Path | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) of the webhook listener (only meaningful when `listen` is set)."""
        return _split_host_port(self.listen or "")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None:
            _split_host_port(value)
        return value


_MQTT_SCHEMES = ("mqtt", "mqtts")
MQTT_PORT = 1883
MQTTS_PORT = 8883


class MqttConfig(_Section):
    """`[mqtt]`: the monitoring broker (events are kept in the outbox while it is away)."""

    url: str | None = None
    password_file: Path | None = None
    include_parties: bool = False
    stats_interval: float = Field(default=30.0, gt=0)
    protocol: Literal["5", "3.1.1"] = "5"
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    tls_verify: bool = True
    reconnect_max_delay: float = Field(default=60.0, ge=1)
    outbox_max_age: float = Field(default=7 * 86400.0, gt=0)
    outbox_max_rows: int = Field(default=100_000, ge=1)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_broker_url(value)
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerAddress:
    """Where the broker is, from `mqtt.url`."""

    tls: bool
    host: str
    port: int
    username: str | None


def parse_broker_url(url: str) -> BrokerAddress:
    """Split `mqtt://host[:port]` or `mqtts://[user@]host[:port]`.

    Raises:
        ValueError: another scheme, no host, a bad port, or a password in the URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in _MQTT_SCHEMES:
        raise ValueError(f"{url!r}: expected mqtt://HOST[:PORT] or mqtts://[USER@]HOST[:PORT]")
    if parts.password is not None:
        raise ValueError("the password goes in mqtt.password_file, never in the URL")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r}: bad port") from exc
    if not parts.hostname or parts.path not in {"", "/"}:
        raise ValueError(f"{url!r}: expected HOST[:PORT] and nothing after it")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        tls=tls,
        host=parts.hostname,
        port=port or (MQTTS_PORT if tls else MQTT_PORT),
        username=unquote(parts.username) if parts.username else None,
    )


class WebConfig(_Section):
    """`[web]`: the compliance page."""

    listen: str = "0.0.0.0:8443"  # the page is meant to be reached from the LAN
    tls_cert_file: Path = Path("/etc/tapeline/tls/web.crt")
    tls_key_file: Path = Path("/etc/tapeline/tls/web.key")
    tls: bool = True

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        _split_host_port(value)
        return value

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the page listens on."""
        return _split_host_port(self.listen)


_CLASS_NAME = r"^[a-z0-9][a-z0-9.-]{0,63}$"


class RetentionClassConfig(_Section):
    """A `[[retention.classes]]` entry: a class added to (or replacing) a shipped template."""

    name: str = Field(pattern=_CLASS_NAME)
    minimum_days: int = Field(ge=1)
    maximum_days: int | None = Field(default=None, ge=1)
    accessible_days: int | None = Field(default=None, ge=0)
    start: Literal["creation", "fiscal-year-end", "event"] = "creation"
    rule: str = ""

    @model_validator(mode="after")
    def _maximum_not_below_minimum(self) -> RetentionClassConfig:
        if self.maximum_days is not None and self.maximum_days < self.minimum_days:
            raise ValueError(f"class {self.name}: maximum_days is below minimum_days")
        return self


class RetentionPolicyConfig(_Section):
    """A `[[retention.policies]]` entry: records matching every criterion get the class."""

    name: str = Field(min_length=1, max_length=100)
    retention_class: str = Field(pattern=_CLASS_NAME)
    line: str | None = None
    team: str | None = None
    channel: Literal["voice", "whatsapp"] | None = None
    direction: Literal["inbound", "outbound", "internal"] | None = None
    tag: str | None = None

    def criteria(self) -> dict[str, str]:
        """The criteria that are set."""
        values = {
            "line": self.line,
            "team": self.team,
            "channel": self.channel,
            "direction": self.direction,
            "tag": self.tag,
        }
        return {k: v for k, v in values.items() if v is not None}

    @model_validator(mode="after")
    def _has_a_criterion(self) -> RetentionPolicyConfig:
        if not self.criteria():
            raise ValueError(f"policy {self.name}: give at least one of line, team, channel, ...")
        return self


class RetentionConfig(_Section):
    """`[retention]`: classes, policies, the default class and the purge grace period."""

    default_class: str = "finra-4511"
    purge_grace_days: int = Field(default=14, ge=0)
    fiscal_year_end: str = Field(
        default="12-31", pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
    )
    max_clock_jump_s: float = Field(default=3600.0, gt=0)
    classes: list[RetentionClassConfig] = Field(default_factory=list)
    policies: list[RetentionPolicyConfig] = Field(default_factory=list)

    @field_validator("fiscal_year_end")
    @classmethod
    def _real_day(cls, value: str) -> str:
        month, day = (int(part) for part in value.split("-"))
        try:
            date(2024, month, day)  # a leap year: "02-29" is a real year end (28 Feb otherwise)
        except ValueError as exc:
            raise ValueError(f"{value} is not a day of the year (MM-DD)") from exc
        return value


class IntegrityConfig(_Section):
    """`[integrity]`: the background scrub and the signed audit checkpoints."""

    scrub_interval_days: float = Field(default=30.0, gt=0)
    scrub_tick_s: float = Field(default=300.0, gt=0)
    checkpoint_interval_s: float = Field(default=900.0, gt=0)
    checkpoint_target: str = ""

    @field_validator("checkpoint_target")
    @classmethod
    def _check_target(cls, value: str) -> str:
        expected = 'expected "", "syslog", "syslog://HOST[:PORT]" (UDP) or "file:/ABSOLUTE/PATH"'
        if value.startswith("syslog://"):
            try:
                parts = urlsplit(value)
                port = parts.port
            except ValueError as exc:
                raise ValueError(f"{expected}: {exc}") from exc
            if not parts.hostname or parts.path or port == 0:
                raise ValueError(expected)
        elif value and value != "syslog" and not value.startswith("file:/"):
            raise ValueError(expected)
        return value


class AlarmsConfig(_Section):
    """`[alarms]`: thresholds of the recorder's alarms and how often they are checked."""

    disk_free_warn_bytes: int = Field(default=5 << 30, ge=0)
    check_interval_s: float = Field(default=30.0, gt=0)
    capture_loss_percent: float = Field(default=1.0, ge=0, le=100)
    capture_loss_window: int = Field(default=20, ge=1)
    no_audio_seconds: float = Field(default=300.0, gt=0)
    clock_offset_max_s: float = Field(default=1.0, gt=0)
    clock_source: Literal["auto", "chronyc", "adjtimex", "none"] = "auto"


class Line(_Section):
    """A recorded employee endpoint (`[[lines]]`)."""

    number: str = Field(pattern=r"^\+[1-9][0-9]{4,14}$")
    owner: str
    team: str = ""
    region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    extensions: list[str] = Field(default_factory=list)
    whatsapp_phone_number_id: str | None = None
    regulated: bool = True
    since: date | None = None


class Trunk(_Section):
    """A SIPREC or fork source (`[[trunks]]`)."""

    name: str
    match: list[str]
    mode: Literal["strict", "lenient", "nbr"] = "lenient"
    region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")

    @field_validator("match")
    @classmethod
    def _check_match(cls, values: list[str]) -> list[str]:
        for value in values:
            if value.startswith("cert:"):
                continue
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError as exc:
                raise ValueError(f"{value!r} is neither a network nor cert:NAME") from exc
        return values


class Config(_Section):
    """The whole configuration file."""

    node: NodeConfig = Field(default_factory=NodeConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    siprec: SiprecConfig = Field(default_factory=SiprecConfig)
    tap: TapConfig = Field(default_factory=TapConfig)
    whatsapp: WhatsappConfig = Field(default_factory=WhatsappConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    integrity: IntegrityConfig = Field(default_factory=IntegrityConfig)
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig)
    lines: list[Line] = Field(default_factory=list)
    trunks: list[Trunk] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_lines(self) -> Config:
        seen: set[str] = set()
        for line in self.lines:
            if line.number in seen:
                raise ValueError(f"line {line.number} is listed twice")
            seen.add(line.number)
        return self


def _env_overrides(environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    """Collect `TAPELINE_<SECTION>__<KEY>` (and `TAPELINE_LINES`/`TAPELINE_TRUNKS`) overrides."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "TAPELINE_CONFIG":
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return out


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_config(data: dict[str, Any], *, source: str) -> Config:
    """Validate a parsed TOML mapping.

    Raises:
        ConfigError: naming `source`, the first bad key and the reason.
    """
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        reason = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            reason = "unknown key"
        raise ConfigError(source, key, reason) from exc


def load_config(
    path: Path | None = None, *, environ: dict[str, str] | os._Environ[str] | None = None
) -> Config:
    """Read, merge with environment overrides and validate the configuration file.

    Raises:
        ConfigError: when the file is missing or unreadable, is not TOML, or a key is wrong.
    """
    env = os.environ if environ is None else environ
    path = path or Path(env.get("TAPELINE_CONFIG", str(DEFAULT_CONFIG_PATH)))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(str(path), "", "file not found") from exc
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from exc
    return parse_config(_merge(data, _env_overrides(env)), source=str(path))


def resolve_secret_path(path: Path, *, environ: dict[str, str] | None = None) -> Path:
    """Find a secret file: relative names are looked up in `$CREDENTIALS_DIRECTORY` first."""
    env = os.environ if environ is None else environ
    creds = env.get("CREDENTIALS_DIRECTORY")
    if not path.is_absolute() and creds:
        candidate = Path(creds) / path
        if candidate.exists():
            return candidate
    return path


def read_secret(path: Path, *, key: str, source: str = "config") -> str:
    """Read a one-line secret from a file; the value itself never appears in errors or logs.

    Raises:
        ConfigError: when the file cannot be read or is empty.
    """
    real = resolve_secret_path(path)
    try:
        value = real.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(source, key, f"cannot read secret file {real}: {exc.strerror}") from exc
    if not value:
        raise ConfigError(source, key, f"secret file {real} is empty")
    return value
