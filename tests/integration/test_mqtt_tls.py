"""TLS with a CA and broker certificate made here, username/password auth; wrong CA refused."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tapeline.archive.core import Archive
from tapeline.archive.nodes import raise_alarm
from tapeline.config import Config, parse_config
from tests.conftest import config_dict
from tests.integration.mqtt_support import Collector, Mosquitto, running_publisher, validate_event

USER = "tapeline"
PASSWORD = "correct horse battery"  # a throw-away broker account


@dataclass(frozen=True, slots=True)
class Pki:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_pki(common: str) -> Pki:
    """A CA and a broker certificate for 127.0.0.1 / localhost signed by it."""
    ca_key, ca_cert = _ca(common)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("broker"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pki(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki("Tapeline test CA")


@pytest.fixture
def tls_broker(pki: Pki) -> Iterator[Mosquitto]:
    broker = Mosquitto(extra="allow_anonymous false\n")
    passwd = broker.file("passwd", b"")
    subprocess.run(
        ["mosquitto_passwd", "-b", str(passwd), USER, PASSWORD], check=True, capture_output=True
    )
    ca = broker.file("ca.crt", pki.ca_pem)
    cert = broker.file("server.crt", pki.cert_pem)
    key = broker.file("server.key", pki.key_pem)
    with broker.conf.open("a", encoding="utf-8") as conf:
        conf.write(
            f"password_file {passwd}\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
            "tls_version tlsv1.2\n"
        )
    broker.start()
    try:
        yield broker
    finally:
        broker.cleanup()


def _config(tmp_path: Path, port: int, ca_pem: bytes, password: str) -> Config:
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    (tmp_path / "mqtt.pass").write_text(password + "\n", encoding="utf-8")
    data = config_dict(tmp_path)
    data["mqtt"] = {
        "url": f"mqtts://{USER}@127.0.0.1:{port}",
        "ca_file": str(tmp_path / "ca.crt"),
        "password_file": str(tmp_path / "mqtt.pass"),
        "reconnect_max_delay": 1.0,
    }
    return parse_config(data, source="test")


def _subscriber(broker: Mosquitto, pki: Pki) -> Collector:
    context = ssl.create_default_context(cadata=pki.ca_pem.decode())
    return Collector(broker.port, username=USER, password=PASSWORD, tls_context=context)


@pytest.mark.slow
async def test_tls_with_verified_broker_certificate_and_password_delivers_events(
    tmp_path: Path, tls_broker: Mosquitto, pki: Pki
) -> None:
    config = _config(tmp_path, tls_broker.port, pki.ca_pem, PASSWORD)
    archive = Archive.open(config)
    try:
        async with _subscriber(tls_broker, pki) as sub, running_publisher(config, archive):
            await sub.wait_for(lambda ms: any(m.payload == b"online" for m in ms))
            await asyncio.to_thread(
                raise_alarm, archive, code="disk.usage.80", severity="warning", message="80% used"
            )
            await sub.wait_for(lambda _: sub.event_count >= 1)
        event = next(m for m in sub.messages if "/event/" in m.topic)
        validate_event(event.topic, event.json())
        assert event.json()["data"]["code"] == "disk.usage.80"
    finally:
        archive.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("which", "expected"),
    [("wrong-ca", "certificate verify failed"), ("wrong-password", "Not authorized")],
)
async def test_broker_refused_when_ca_or_password_is_wrong(
    tmp_path: Path, tls_broker: Mosquitto, pki: Pki, which: str, expected: str
) -> None:
    ca_pem = make_pki("Some other CA").ca_pem if which == "wrong-ca" else pki.ca_pem
    password = "not the password" if which == "wrong-password" else PASSWORD
    config = _config(tmp_path, tls_broker.port, ca_pem, password)
    archive = Archive.open(config)
    try:
        async with _subscriber(tls_broker, pki) as sub, running_publisher(config, archive) as pub:
            async with asyncio.timeout(20):
                await pub.wait_for(lambda p: p.counters.mqtt_failures_total >= 2)
            status, output = pub.health()
            assert status == "warn"
            assert expected in output
            assert pub.counters.mqtt_connects_total == 0
            assert not pub.connected
        assert not sub.on("status")  # the publisher never got in
    finally:
        archive.close()
