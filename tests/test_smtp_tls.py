"""SMTP over STARTTLS and implicit TLS, with authentication, against a real aiosmtpd server
holding a certificate made for the test (trusted through ``ca_file``)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from temporalio.exceptions import ApplicationError

from activities.email.smtp import SmtpProvider
from activities.messages import OutgoingEmail
from config.project import SmtpSettings
from tests.net import free_port

EMAIL = OutgoingEmail(
    message_id="msg_tls",
    to="max@example.com",
    from_email="shop@laptops.example",
    subject="Über TLS",
    text="Grüße",
    html="<p>Grüße</p>",
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "relay.pem", folder / "relay.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class Relay:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"shop", b"s3cret")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def tls_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


@pytest.fixture
def starttls_relay(tls_context: ssl.SSLContext) -> Iterator[tuple[Relay, int]]:
    relay, port = Relay(), free_port()
    controller = Controller(
        relay,
        hostname="127.0.0.1",
        port=port,
        tls_context=tls_context,
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
    )
    controller.start()
    yield relay, port
    controller.stop()


@pytest.fixture
def implicit_tls_relay(tls_context: ssl.SSLContext) -> Iterator[tuple[Relay, int]]:
    relay, port = Relay(), free_port()
    controller = Controller(
        relay,
        hostname="127.0.0.1",
        port=port,
        ssl_context=tls_context,
        authenticator=authenticate,
        auth_require_tls=False,  # aiosmtpd does not see implicit TLS as TLS; it is
    )
    controller.start()
    yield relay, port
    controller.stop()


async def test_starttls_with_login(
    starttls_relay: tuple[Relay, int], certificate: tuple[Path, Path]
) -> None:
    relay, port = starttls_relay
    settings = SmtpSettings(
        host="127.0.0.1", port=port, security="starttls", timeout="5s", ca_file=str(certificate[0])
    )
    await SmtpProvider(settings, "shop", "s3cret").send(EMAIL)
    [envelope] = relay.envelopes
    assert envelope.rcpt_tos == ["max@example.com"]
    assert b"Content-Type: multipart/alternative" in envelope.content


async def test_implicit_tls_with_login(
    implicit_tls_relay: tuple[Relay, int], certificate: tuple[Path, Path]
) -> None:
    relay, port = implicit_tls_relay
    settings = SmtpSettings(
        host="127.0.0.1", port=port, security="tls", timeout="5s", ca_file=str(certificate[0])
    )
    await SmtpProvider(settings, "shop", "s3cret").send(EMAIL)
    assert len(relay.envelopes) == 1


async def test_a_wrong_password_over_starttls_is_permanent(
    starttls_relay: tuple[Relay, int], certificate: tuple[Path, Path]
) -> None:
    _, port = starttls_relay
    settings = SmtpSettings(
        host="127.0.0.1", port=port, security="starttls", timeout="5s", ca_file=str(certificate[0])
    )
    with pytest.raises(ApplicationError) as caught:
        await SmtpProvider(settings, "shop", "wrong").send(EMAIL)
    assert caught.value.non_retryable and caught.value.type == "Misconfigured"


async def test_an_untrusted_certificate_is_refused(starttls_relay: tuple[Relay, int]) -> None:
    _, port = starttls_relay
    settings = SmtpSettings(host="127.0.0.1", port=port, security="starttls", timeout="5s")
    with pytest.raises(ApplicationError) as caught:
        await SmtpProvider(settings, "shop", "s3cret").send(EMAIL)
    assert caught.value.type == "Misconfigured"
