"""Email delivery against real servers: a local SendGrid stand-in (HTTP), aiosmtpd (SMTP) and a
Maildir on disk; plus the MIME message itself and the signed unsubscribe tokens."""

from __future__ import annotations

import asyncio
import logging
import mailbox
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from temporalio.exceptions import ApplicationError

from activities.email.maildir import MaildirProvider, key_for, list_messages, read_message
from activities.email.mime import InvalidMessage, build_message
from activities.email.sendgrid import SendGridProvider
from activities.email.smtp import SmtpProvider
from activities.messages import OutgoingEmail
from config.project import SendGridSettings, SmtpSettings
from ingestion.unsubscribe import (
    InvalidToken,
    MissingSecret,
    _encode,
    _mac,
    make_token,
    secret_from_env,
    unsubscribe_headers,
    verify_token,
)
from tests.net import free_port
from tests.sendgrid_standin import SendGridStandIn

SECRET = b"test-secret-0123456789abcdef"
API_KEY = "SG.standin-key.0123456789abcdef"
NOW = 1_700_000_000.0
TOKEN = make_token(SECRET, "cust-42", now=NOW)
UNSUBSCRIBE = unsubscribe_headers("https://shop.example/unsubscribe", "unsub@shop.example", TOKEN)
SUBJECT = "Grüße aus München: Äpfel, Öl und Übergrößen für Jürgen"
TEXT = "Hallo Jürgen,\n\nschöne Grüße aus Köln!\n"
HTML = "<p>Hallo Jürgen,</p><p>schöne Grüße aus Köln!</p>"


def marketing_email(**changes: Any) -> OutgoingEmail:
    fields: dict[str, Any] = dict(
        message_id="msg_0123456789abcdef0123456789abcdef",
        to="kunde@example.com",
        from_email="news@shop.example",
        from_name="Shop Team",
        subject=SUBJECT,
        html=HTML,
        text=TEXT,
        headers=dict(UNSUBSCRIBE),
        categories=["welcome"],
        custom_args={
            "touchpoint_message_id": "msg_0123456789abcdef0123456789abcdef",
            "journey": "welcome",
            "step": "send_welcome",
        },
        marketing=True,
    )
    fields.update(changes)
    return OutgoingEmail(**fields)


def transactional_email(**changes: Any) -> OutgoingEmail:
    return marketing_email(headers={}, marketing=False, categories=["receipt"], **changes)


def refused_port() -> int:
    """A port nothing listens on (bound and closed again)."""
    return free_port()


async def failure(send: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await send
    return caught.value


# --- unsubscribe tokens ---------------------------------------------------------------------


def test_a_token_round_trips() -> None:
    claim = verify_token(SECRET, TOKEN)
    assert claim.customer_id == "cust-42"
    assert claim.category == "marketing"
    assert claim.issued_at == datetime.fromtimestamp(NOW, UTC)
    other = verify_token(SECRET, make_token(SECRET, "kunde/ä 1", "newsletter"))
    assert (other.customer_id, other.category) == ("kunde/ä 1", "newsletter")


def test_a_token_is_url_safe() -> None:
    token = make_token(SECRET, "cust/?&=#ü 42")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(_flip(TOKEN, 3), id="payload-tampered"),
        pytest.param(_flip(TOKEN, len(TOKEN) - 5), id="mac-tampered"),
        pytest.param(TOKEN.split(".")[0] + "." + _encode(b"\0" * 32), id="mac-replaced"),
        pytest.param(TOKEN[:-1] + ("F" if TOKEN[-1] != "F" else "E"), id="mac-non-canonical"),
        pytest.param(TOKEN + "=", id="padding"),
        pytest.param(TOKEN.split(".")[0], id="no-mac"),
        pytest.param(TOKEN + ".x", id="three-parts"),
        pytest.param("", id="empty"),
        pytest.param(".", id="dot"),
        pytest.param("not a token", id="garbage"),
        pytest.param("!!!.###", id="not-base64"),
        pytest.param("a" * 5000 + "." + "b", id="huge"),
    ],
)
def test_a_tampered_or_garbage_token_is_rejected(token: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(SECRET, token)


def test_a_token_from_another_secret_is_rejected() -> None:
    with pytest.raises(InvalidToken):
        verify_token(b"another-secret-0123456789", TOKEN)


def test_a_signed_but_malformed_payload_is_rejected() -> None:
    body = _encode(b'["cust-42"]')
    with pytest.raises(InvalidToken):
        verify_token(SECRET, f"{body}.{_encode(_mac(SECRET, body))}")


def test_the_secret_comes_from_the_environment() -> None:
    value = "x" * 32
    assert secret_from_env({"TOUCHPOINT_UNSUBSCRIBE_SECRET": value}) == value.encode()
    for environ in ({}, {"TOUCHPOINT_UNSUBSCRIBE_SECRET": "  "}):
        with pytest.raises(MissingSecret, match="TOUCHPOINT_UNSUBSCRIBE_SECRET is not set"):
            secret_from_env(environ)
    with pytest.raises(MissingSecret, match="TOUCHPOINT_UNSUBSCRIBE_SECRET is too short"):
        secret_from_env({"TOUCHPOINT_UNSUBSCRIBE_SECRET": "short"})


def test_the_one_click_headers() -> None:
    expected = {
        "List-Unsubscribe": f"<https://shop.example/unsubscribe/{TOKEN}>, "
        "<mailto:unsub@shop.example?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    headers = unsubscribe_headers(
        "https://shop.example/unsubscribe/", "mailto:unsub@shop.example", TOKEN
    )
    assert headers == UNSUBSCRIBE == expected
    only_https = unsubscribe_headers("https://shop.example/u/", None, TOKEN)
    assert only_https["List-Unsubscribe"] == f"<https://shop.example/u/{TOKEN}>"
    with pytest.raises(ValueError):
        unsubscribe_headers("https://shop.example/u>\r\nBcc: x@evil.example", None, TOKEN)


# --- the MIME message -------------------------------------------------------------------------


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def assert_alternative(message: EmailMessage) -> None:
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == TEXT
    assert parts[1].get_content().rstrip("\n") == HTML
    assert message["Subject"] == SUBJECT
    assert not message.defects and all(not p.defects for p in parts)


def test_a_marketing_message_is_rfc5322_with_one_click_unsubscribe() -> None:
    when = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    message = parse(build_message(marketing_email(), "shop.example", now=when).as_bytes())
    assert_alternative(message)
    assert message["From"] == "Shop Team <news@shop.example>"
    assert message["To"] == "kunde@example.com"
    assert message["Date"].datetime == when
    assert message["Message-ID"] == "<msg_0123456789abcdef0123456789abcdef@shop.example>"
    assert message["X-Touchpoint-Message-Id"] == "msg_0123456789abcdef0123456789abcdef"
    assert message["List-Unsubscribe"] == UNSUBSCRIBE["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    raw = build_message(marketing_email(), "shop.example").as_bytes()
    assert raw.isascii() and max(len(line) for line in raw.splitlines()) <= 998
    assert TOKEN.encode() in raw  # literal, never an RFC 2047 encoded-word


def test_a_transactional_message_has_no_unsubscribe_headers() -> None:
    message = parse(build_message(transactional_email(), "shop.example").as_bytes())
    assert_alternative(message)
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None


def test_a_test_send_is_marked_and_headers_cannot_be_injected() -> None:
    email = marketing_email(
        test=True, subject="Hallo\r\nBcc: victim@example.com", from_name="Shöp Ümlaut"
    )
    message = parse(build_message(email, "shop.example").as_bytes())
    assert message["Subject"] == "[TEST] Hallo Bcc: victim@example.com"
    assert message["Bcc"] is None
    assert message["From"].addresses[0].display_name == "Shöp Ümlaut"


def test_the_message_id_is_deterministic_and_always_valid() -> None:
    first = build_message(marketing_email(message_id="a b:c@d"), "shop.example")
    again = build_message(marketing_email(message_id="a b:c@d"), "shop.example")
    assert first["Message-ID"] == again["Message-ID"] == "<a=20b=3Ac=40d@shop.example>"


def test_a_message_without_a_body_or_with_reserved_headers_is_invalid() -> None:
    with pytest.raises(InvalidMessage):
        build_message(marketing_email(text=None, html=None), "shop.example")
    with pytest.raises(InvalidMessage):
        build_message(marketing_email(headers={"From": "boss@shop.example"}), "shop.example")
    with pytest.raises(InvalidMessage):
        build_message(marketing_email(to="not an address"), "shop.example")


def test_a_single_body_is_not_multipart() -> None:
    message = parse(build_message(marketing_email(text=None), "shop.example").as_bytes())
    assert message.get_content_type() == "text/html"


# --- Maildir ----------------------------------------------------------------------------------


async def test_maildir_writes_one_valid_message_per_message_id(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    provider = MaildirProvider(outbox)
    key = await provider.send(marketing_email())
    assert key == key_for("msg_0123456789abcdef0123456789abcdef")
    assert await provider.send(marketing_email()) == key  # a retry
    box = mailbox.Maildir(outbox, create=False)
    assert list(box.keys()) == [key]
    with box.get_file(key) as file:
        message = parse(file.read())
    assert_alternative(message)
    assert message["List-Unsubscribe"] == UNSUBSCRIBE["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert not list((outbox / "tmp").iterdir())


async def test_maildir_recognises_a_message_a_mail_client_has_read(tmp_path: Path) -> None:
    provider = MaildirProvider(tmp_path)
    key = await provider.send(marketing_email())
    (tmp_path / "new" / key).rename(tmp_path / "cur" / f"{key}:2,S")
    assert await provider.send(marketing_email()) == key
    assert len(mailbox.Maildir(tmp_path, create=False)) == 1


async def test_the_outbox_lists_newest_first_and_reads_by_prefix(tmp_path: Path) -> None:
    assert list_messages(tmp_path / "missing") == []
    provider = MaildirProvider(tmp_path)
    first = await provider.send(transactional_email(message_id="msg_first"))
    await asyncio.sleep(1.1)  # Date has whole seconds
    second = await provider.send(marketing_email(message_id="msg_second", test=True))
    entries = list_messages(tmp_path)
    assert [e.key for e in entries] == [second, first]
    assert [e.message_id for e in entries] == ["msg_second", "msg_first"]
    assert entries[0].subject == f"[TEST] {SUBJECT}"
    assert entries[0].to == "kunde@example.com"
    assert entries[0].date is not None and entries[0].date > entries[1].date  # type: ignore[operator]
    message = read_message(tmp_path, second[:8])
    assert message["X-Touchpoint-Message-Id"] == "msg_second"
    assert_alternative(read_message(tmp_path, first))
    with pytest.raises(KeyError):
        read_message(tmp_path, "zzzz")
    with pytest.raises(KeyError):
        read_message(tmp_path / "missing", "a")
    with pytest.raises(LookupError):
        read_message(tmp_path, "")


async def test_an_invalid_email_is_a_permanent_failure_for_maildir(tmp_path: Path) -> None:
    error = await failure(MaildirProvider(tmp_path).send(marketing_email(to="a b c")))
    assert (error.non_retryable, error.type, error.next_retry_delay) == (
        True,
        "RecipientUnreachable",
        None,
    )


async def test_an_unwritable_outbox_is_retryable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    error = await failure(MaildirProvider(blocker / "outbox").send(marketing_email()))
    assert (error.non_retryable, error.type, error.next_retry_delay) == (
        False,
        "ProviderError",
        None,
    )


# --- SendGrid ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin() -> Iterator[SendGridStandIn]:
    with SendGridStandIn() as server:
        yield server


@pytest.fixture
def sendgrid(standin: SendGridStandIn, monkeypatch: pytest.MonkeyPatch) -> SendGridStandIn:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    standin.reset()
    return standin


def sendgrid_provider(url: str, **settings: Any) -> SendGridProvider:
    config = SendGridSettings(host=url, timeout="1s", **settings)
    return SendGridProvider(config, API_KEY, clock=lambda: NOW)


async def test_sendgrid_receives_the_exact_v3_request(sendgrid: SendGridStandIn) -> None:
    provider = sendgrid_provider(
        sendgrid.url, sandbox=True, categories=["newsletter", "welcome"], unsubscribe_group=4242
    )
    assert await provider.send(marketing_email()) == "standin-1"
    [request] = sendgrid.requests
    assert (request.method, request.path) == ("POST", "/v3/mail/send")
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "sendgrid/6.12.5;python"
    assert request.json == {
        "from": {"email": "news@shop.example", "name": "Shop Team"},
        "subject": SUBJECT,
        "personalizations": [{"to": [{"email": "kunde@example.com"}]}],
        "content": [{"type": "text/plain", "value": TEXT}, {"type": "text/html", "value": HTML}],
        "headers": UNSUBSCRIBE,
        "categories": ["newsletter", "welcome"],
        "custom_args": {
            "touchpoint_message_id": "msg_0123456789abcdef0123456789abcdef",
            "journey": "welcome",
            "step": "send_welcome",
        },
        "asm": {"group_id": 4242},
        "mail_settings": {"sandbox_mode": {"enable": True}},
    }
    assert list(request.json["content"][0]) == ["type", "value"]


async def test_sendgrid_transactional_mail_has_no_group_or_sandbox(
    sendgrid: SendGridStandIn,
) -> None:
    sendgrid.answer(202, headers={"X-Message-Id": "sg-abc123"})
    provider = sendgrid_provider(sendgrid.url, unsubscribe_group=4242)
    assert await provider.send(transactional_email(test=True)) == "sg-abc123"
    body = sendgrid.requests[0].json
    assert body["subject"] == f"[TEST] {SUBJECT}"
    assert body["categories"] == ["receipt"]
    assert "asm" not in body and "mail_settings" not in body and "headers" not in body


async def test_sendgrid_sandbox_200_without_a_message_id(sendgrid: SendGridStandIn) -> None:
    sendgrid.answer(200)
    assert await sendgrid_provider(sendgrid.url, sandbox=True).send(marketing_email()) is None


async def test_sendgrid_429_is_retried_after_the_rate_limit_reset(
    sendgrid: SendGridStandIn,
) -> None:
    sendgrid.answer(
        429,
        {"errors": [{"field": None, "message": "too many requests"}]},
        headers={"X-RateLimit-Reset": str(int(NOW) + 37)},
    )
    error = await failure(sendgrid_provider(sendgrid.url).send(marketing_email()))
    assert (error.non_retryable, error.type) == (False, "RateLimited")
    assert error.next_retry_delay == timedelta(seconds=37)
    assert "too many requests" in error.message


async def test_sendgrid_429_without_headers_leaves_the_backoff_to_temporal(
    sendgrid: SendGridStandIn,
) -> None:
    sendgrid.answer(429)
    error = await failure(sendgrid_provider(sendgrid.url).send(marketing_email()))
    assert (error.non_retryable, error.type, error.next_retry_delay) == (
        False,
        "RateLimited",
        None,
    )


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_sendgrid_5xx_is_retryable(sendgrid: SendGridStandIn, status: int) -> None:
    sendgrid.answer(status, "upstream trouble")
    error = await failure(sendgrid_provider(sendgrid.url).send(marketing_email()))
    assert (error.non_retryable, error.type, error.next_retry_delay) == (
        False,
        "ProviderError",
        None,
    )
    assert f"provider error {status}: upstream trouble" in error.message


async def test_sendgrid_400_fails_with_sendgrids_messages(sendgrid: SendGridStandIn) -> None:
    sendgrid.answer(
        400, {"errors": [{"message": "Invalid email", "field": "personalizations.0.to.0.email"}]}
    )
    error = await failure(sendgrid_provider(sendgrid.url).send(marketing_email()))
    assert (error.non_retryable, error.type, error.next_retry_delay) == (True, "Rejected", None)
    assert error.message == ("refused (400): Invalid email (field personalizations.0.to.0.email)")


async def test_sendgrid_never_reveals_the_api_key(
    sendgrid: SendGridStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sendgrid.answer(401, {"errors": [{"message": f"key {API_KEY} is revoked", "field": None}]})
    error = await failure(sendgrid_provider(sendgrid.url).send(marketing_email()))
    assert (error.non_retryable, error.type) == (True, "Rejected")
    assert error.message == "refused (401): key [redacted] is revoked"
    assert "standin-key" not in caplog.text
    assert "Bearer [redacted]" in caplog.text  # the library did log its headers, redacted


async def test_sendgrid_timeout_is_retryable(sendgrid: SendGridStandIn) -> None:
    sendgrid.answer(202, delay=3.0)
    started = asyncio.get_running_loop().time()
    error = await failure(sendgrid_provider(sendgrid.url).send(marketing_email()))
    assert asyncio.get_running_loop().time() - started < 2.5
    assert (error.non_retryable, error.type, error.next_retry_delay) == (
        False,
        "ProviderError",
        None,
    )
    assert error.message == "SendGrid unreachable: timed out"


async def test_sendgrid_connection_refused_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    provider = sendgrid_provider(f"http://127.0.0.1:{refused_port()}")
    error = await failure(provider.send(marketing_email()))
    assert (error.non_retryable, error.type, error.next_retry_delay) == (
        False,
        "ProviderError",
        None,
    )
    assert "ConnectionRefusedError" in error.message


# --- SMTP -------------------------------------------------------------------------------------


class Collector:
    """An aiosmtpd handler that keeps what it accepts, or answers with the reply it is given."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[tuple[Collector, int]]:
    collector, port = Collector(), free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield collector, port
    finally:
        controller.stop()


@pytest.fixture
def smtp(smtp_server: tuple[Collector, int]) -> tuple[Collector, SmtpProvider]:
    collector, port = smtp_server
    collector.envelopes.clear()
    collector.rcpt_reply = collector.data_reply = None
    settings = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout="2s")
    return collector, SmtpProvider(settings, None, None)


async def test_smtp_delivers_a_multipart_message(smtp: tuple[Collector, SmtpProvider]) -> None:
    collector, provider = smtp
    message_id = await provider.send(marketing_email())
    assert message_id == "<msg_0123456789abcdef0123456789abcdef@shop.example>"
    [envelope] = collector.envelopes
    assert envelope.mail_from == "news@shop.example"
    assert envelope.rcpt_tos == ["kunde@example.com"]
    assert b"\r\n" in envelope.content  # SMTP line endings on the wire
    message = parse(envelope.content.replace(b"\r\n", b"\n"))
    assert_alternative(message)
    assert message["Message-ID"] == message_id
    assert message["From"] == "Shop Team <news@shop.example>"
    assert message["List-Unsubscribe"] == UNSUBSCRIBE["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_smtp_550_is_permanent(smtp: tuple[Collector, SmtpProvider]) -> None:
    collector, provider = smtp
    collector.rcpt_reply = "550 5.1.1 No such user here"
    error = await failure(provider.send(marketing_email()))
    assert (error.non_retryable, error.type, error.next_retry_delay) == (
        True,
        "RecipientUnreachable",
        None,
    )
    assert "550 5.1.1 No such user here" in error.message
    assert collector.envelopes == []


async def test_smtp_554_on_data_is_permanent(smtp: tuple[Collector, SmtpProvider]) -> None:
    collector, provider = smtp
    collector.data_reply = "554 5.7.1 Message rejected as spam"
    error = await failure(provider.send(marketing_email()))
    assert (error.non_retryable, error.type, error.next_retry_delay) == (True, "Rejected", None)
    assert "554" in error.message


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_smtp_451_is_retryable(smtp: tuple[Collector, SmtpProvider], stage: str) -> None:
    collector, provider = smtp
    setattr(collector, f"{stage}_reply", "451 4.7.1 Greylisted, try again later")
    error = await failure(provider.send(marketing_email()))
    assert (error.non_retryable, error.type, error.next_retry_delay) == (
        False,
        "ProviderError",
        None,
    )
    assert "451 4.7.1 Greylisted" in error.message


async def test_smtp_refused_port_is_retryable() -> None:
    settings = SmtpSettings(host="127.0.0.1", port=refused_port(), security="none", timeout="2s")
    error = await failure(SmtpProvider(settings).send(marketing_email()))
    assert (error.non_retryable, error.type, error.next_retry_delay) == (
        False,
        "ProviderError",
        None,
    )


async def test_smtp_silent_server_times_out_retryably() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        settings = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout="1s")
        error = await failure(SmtpProvider(settings).send(marketing_email()))
    assert (error.non_retryable, error.type, error.next_retry_delay) == (
        False,
        "ProviderError",
        None,
    )
    assert "Timeout" in error.message


async def test_smtp_bad_credentials_are_permanent() -> None:
    def deny(*_: Any) -> AuthResult:
        return AuthResult(success=False, handled=False)

    port = free_port()
    controller = Controller(
        Collector(), hostname="127.0.0.1", port=port, authenticator=deny, auth_require_tls=False
    )
    controller.start()
    try:
        settings = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout="2s")
        provider = SmtpProvider(settings, "user", "wrong-password")
        error = await failure(provider.send(marketing_email()))
    finally:
        controller.stop()
    assert (error.non_retryable, error.type, error.next_retry_delay) == (
        True,
        "Misconfigured",
        None,
    )
    assert "wrong-password" not in error.message


def test_sendgrid_host_must_be_a_url() -> None:
    for host in ("api.sendgrid.com", "ftp://api.sendgrid.com", "https://"):
        with pytest.raises(ValueError, match=r"email\.sendgrid\.host"):
            sendgrid_provider(host)


async def test_sendgrid_refuses_what_its_own_helpers_cannot_build() -> None:
    """The sendgrid helpers raise KeyError on an address without "@": refused before they see
    it (tests/test_addresses.py), not a crash that Temporal would retry ten times."""
    provider = SendGridProvider(SendGridSettings(host="http://127.0.0.1:9", timeout="1s"), "SG.k")
    email = OutgoingEmail(
        message_id="m", to="not-an-address", from_email="a@b.example", subject="s", text="t"
    )
    with pytest.raises(ApplicationError) as caught:
        await provider.send(email)
    assert caught.value.non_retryable and caught.value.type == "RecipientUnreachable"
