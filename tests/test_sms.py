"""SMS through Twilio against a real local server standing in for the Messages API; the E.164
rule; and that no auth token or phone number reaches an error message."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

import activities.sms
from activities.http import USER_AGENT
from activities.sms import (
    RECIPIENT_OPTED_OUT,
    InvalidPhoneNumber,
    OutgoingSms,
    SmsProvider,
    TwilioSms,
    is_e164,
    normalise_e164,
)
from tests.httpstub import closed_port
from tests.twilio_standin import ACCOUNT_SID, AUTH_TOKEN, TwilioStandIn

NUMBER = "+4915123456789"
SENDER = "+14155550100"
SERVICE = "MG9752274e9e519418a7406176694466fa"
BODY = "Hallo Jürgen, 20 % auf alles + gratis Versand 👋 https://shop.example/s?a=1&b=2"
CALLBACK = "https://touchpoint.example/twilio/status?message=msg_1"
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
# The customer's number as Twilio or a message might spell it: none may reach an error.
NUMBER_SPELLINGS = [NUMBER, NUMBER[1:], "151 2345 6789", "15123456789", "23456789"]

START = "invalid phone number: it must start with + and the country code (E.164)"
ONLY_DIGITS = (
    "invalid phone number: only digits, spaces, dashes, dots and parentheses may follow the +"
)
ZERO = "invalid phone number: a country code cannot start with 0"


def length(digits: int) -> str:
    return f"invalid phone number: it has {digits} digits; E.164 allows 8 to 15"


def classified(error: ApplicationError) -> tuple[str | None, bool, timedelta | None]:
    return error.type, error.non_retryable, error.next_retry_delay


def assert_clean(error: ApplicationError) -> None:
    """No auth token, no spelling of the number, and no httpx error chained for Temporal."""
    for secret in [AUTH_TOKEN, *NUMBER_SPELLINGS]:
        assert secret not in error.message
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None


async def failure(provider: TwilioSms, sms: OutgoingSms | None = None) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await provider.send(sms or OutgoingSms("msg_1", NUMBER, BODY))
    return caught.value


@pytest.fixture(scope="module")
def standin() -> Iterator[TwilioStandIn]:
    with TwilioStandIn() as server:
        yield server


@pytest.fixture
def twilio(standin: TwilioStandIn) -> TwilioStandIn:
    standin.reset()
    return standin


@pytest.fixture
def provider(twilio: TwilioStandIn, client: httpx.AsyncClient) -> TwilioSms:
    return TwilioSms(client, ACCOUNT_SID, AUTH_TOKEN, sender=SENDER, base_url=twilio.url)


# --- the E.164 rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (NUMBER, True),
        ("+12345678", True),  # 8 digits, the shortest
        ("+123456789012345", True),  # 15 digits, the longest
        ("+1234567", False),
        ("+1234567890123456", False),
        ("+49 151 23456789", False),  # tidy it first: normalise_e164
        ("4915123456789", False),
        ("+04915123456789", False),
        (NUMBER + "\n", False),
        ("+٤٩١٥١٢٣٤٥٦٧٨٩", False),  # Arabic-Indic digits
        ("", False),
        (None, False),
        (4915123456789, False),
    ],
)
def test_is_e164(number: object, expected: bool) -> None:
    assert is_e164(number) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NUMBER, NUMBER),
        ("+49 151 2345 6789", NUMBER),
        ("+49-151-2345-6789", NUMBER),
        ("+49 (151) 2345-67.89", NUMBER),
        ("+1 (415) 555-0100", "+14155550100"),
        ("+33.6.12.34.56.78", "+33612345678"),
        ("+44 (0)20 7946 0958", "+442079460958"),  # the trunk 0 is dropped
        ("+44 ( 0 ) 20 7946 0958", "+442079460958"),
        (" \t+49\u00a0151\u202f2345\u20116789\n", NUMBER),  # no-break spaces and hyphen
        ("+1\u2013415\u2013555\u20130100", "+14155550100"),  # en dashes
        ("+12345678", "+12345678"),
        ("+123 456 789 012 345", "+123456789012345"),
    ],
)
def test_normalise_e164_tidies_what_people_write(text: str, expected: str) -> None:
    assert normalise_e164(text) == expected
    assert is_e164(expected)


REFUSED = [
    pytest.param("", "invalid phone number: it is empty", id="empty"),
    pytest.param(" - ( ) . ", "invalid phone number: it is empty", id="only-separators"),
    pytest.param("4915123456789", START, id="no-plus"),
    pytest.param("0049 151 23456789", START, id="00-prefix"),
    pytest.param("0151 23456789", START, id="national"),
    pytest.param("whatsapp:+4915123456789", START, id="whatsapp"),
    pytest.param("tel:+4915123456789", START, id="tel-uri"),
    pytest.param("＋4915123456789", START, id="fullwidth-plus"),
    pytest.param("+49 151 CALL-NOW", ONLY_DIGITS, id="letters"),
    pytest.param("+1-800-FLOWERS", ONLY_DIGITS, id="vanity"),
    pytest.param("+4915123456789 ext. 12", ONLY_DIGITS, id="extension"),
    pytest.param("+49/151/23456789", ONLY_DIGITS, id="slashes"),
    pytest.param("++4915123456789", ONLY_DIGITS, id="two-plus"),
    pytest.param("+4915123456789,+4915123456780", ONLY_DIGITS, id="two-numbers"),
    pytest.param("+4915123456789\n+4915123456780", ONLY_DIGITS, id="two-numbers-on-two-lines"),
    pytest.param("+4915123456789&Body=spam", ONLY_DIGITS, id="form-field-injection"),
    pytest.param("+49151\x0023456789", ONLY_DIGITS, id="nul"),
    pytest.param("+٤٩١٥١٢٣٤٥٦٧٨٩", ONLY_DIGITS, id="arabic-indic-digits"),
    pytest.param("+４９１５１２３４５６７８９", ONLY_DIGITS, id="fullwidth-digits"),
    pytest.param("+0151 23456789", ZERO, id="plus-zero"),
    pytest.param("+00 49 151 23456789", ZERO, id="plus-00"),
    pytest.param("+", length(0), id="plus-alone"),
    pytest.param("+1234567", length(7), id="too-short"),
    pytest.param("+1 234 567 890 123 456", length(16), id="too-long"),
]


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_normalise_e164_refuses_without_repeating_the_number(text: str, message: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalise_e164(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_normalise_e164_refuses_what_is_not_text() -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalise_e164(4915123456789)  # type: ignore[arg-type]
    assert str(caught.value) == "invalid phone number: expected text"


# --- the request ------------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_twilio_receives_the_exact_request(
    twilio: TwilioStandIn, provider: TwilioSms
) -> None:
    assert await provider.send(OutgoingSms("msg_1", NUMBER, BODY)) == "SM" + "0" * 31 + "1"
    [request] = twilio.requests
    assert (request.method, request.path) == ("POST", MESSAGES)
    assert request.headers["authorization"] == basic(ACCOUNT_SID, AUTH_TOKEN)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["user-agent"] == USER_AGENT
    assert request.fields == [("To", NUMBER), ("From", SENDER), ("Body", BODY)]
    assert request.raw == (
        b"To=%2B4915123456789&From=%2B14155550100&Body=Hallo+J%C3%BCrgen%2C+20+%25+auf+alles"
        b"+%2B+gratis+Versand+%F0%9F%91%8B+https%3A%2F%2Fshop.example%2Fs%3Fa%3D1%26b%3D2"
    )


async def test_a_messaging_service_and_a_status_callback(
    twilio: TwilioStandIn, client: httpx.AsyncClient
) -> None:
    provider = TwilioSms(client, ACCOUNT_SID, AUTH_TOKEN, sender=SERVICE, base_url=twilio.url)
    sms = OutgoingSms("msg_1", NUMBER, "Ihr Code: 4711", status_callback=CALLBACK)
    assert await provider.send(sms) == "SM" + "0" * 31 + "1"
    [request] = twilio.requests
    assert request.path == MESSAGES
    assert request.fields == [
        ("To", NUMBER),
        ("MessagingServiceSid", SERVICE),
        ("Body", "Ihr Code: 4711"),
        ("StatusCallback", CALLBACK),
    ]


async def test_the_number_is_sent_normalised(twilio: TwilioStandIn, provider: TwilioSms) -> None:
    await provider.send(OutgoingSms("msg_1", " +49 (151) 2345-67.89 ", "Hallo"))
    await provider.send(OutgoingSms("msg_2", "+44 (0)20 7946 0958", "Hello", status_callback=""))
    assert [r.fields for r in twilio.requests] == [
        [("To", NUMBER), ("From", SENDER), ("Body", "Hallo")],
        [("To", "+442079460958"), ("From", SENDER), ("Body", "Hello")],
    ]


async def test_each_send_is_one_request(twilio: TwilioStandIn, provider: TwilioSms) -> None:
    sids = [await provider.send(OutgoingSms(f"msg_{i}", NUMBER, "Hallo")) for i in range(3)]
    assert sids == [f"SM{i:032x}" for i in (1, 2, 3)]
    assert len(twilio.requests) == 3


@pytest.mark.parametrize(("text", "message"), REFUSED)
async def test_an_invalid_number_is_refused_before_any_request(
    twilio: TwilioStandIn, provider: TwilioSms, text: str, message: str
) -> None:
    error = await failure(provider, OutgoingSms("msg_1", text, BODY))
    assert classified(error) == ("RecipientUnreachable", True, None)
    assert error.message == f"not sent: {message}"
    assert twilio.requests == []
    assert_clean(error)
    if len(text.strip()) >= 5:
        assert text.strip() not in error.message


# --- how Twilio's answers are classified ------------------------------------------------------

RETRY_AFTER_7 = {"Retry-After": "7"}


def twilio_error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> Callable[[TwilioStandIn], None]:
    return lambda twilio: twilio.error(status, code, message, headers)


def plain(
    status: int, body: str, headers: dict[str, str] | None = None
) -> Callable[[TwilioStandIn], None]:
    return lambda twilio: twilio.answer(status, body, headers)


CLASSIFIED: list[Any] = [
    pytest.param(
        twilio_error(429, 20429, "Too Many Requests", RETRY_AFTER_7),
        ("RateLimited", False, timedelta(seconds=7)),
        "twilio rate limited (429, code 20429): Too Many Requests",
        id="429-retry-after",
    ),
    pytest.param(
        twilio_error(429, 20429, "Too Many Requests"),
        ("RateLimited", False, None),
        "twilio rate limited (429, code 20429): Too Many Requests",
        id="429",
    ),
    pytest.param(
        twilio_error(500, 20500, "An internal server error has occurred"),
        ("ProviderError", False, None),
        "twilio error (500, code 20500): An internal server error has occurred",
        id="500",
    ),
    pytest.param(
        plain(503, "Service Unavailable", {"Retry-After": "30"}),
        ("ProviderError", False, timedelta(seconds=30)),
        "twilio error (503): Service Unavailable",
        id="503-not-json",
    ),
    pytest.param(
        plain(502, "<html>\n<body><h1>502 Bad Gateway</h1></body>\n</html>"),
        ("ProviderError", False, None),
        "twilio error (502): <html> <body><h1>502 Bad Gateway</h1></body> </html>",
        id="502-html",
    ),
    pytest.param(
        twilio_error(400, 21211, "The 'To' number is not a valid phone number."),
        ("RecipientUnreachable", True, None),
        "twilio refused (400, code 21211): The 'To' number is not a valid phone number.",
        id="21211",
    ),
    pytest.param(
        twilio_error(400, 21211, f"The 'To' number {NUMBER} is not a valid phone number."),
        ("RecipientUnreachable", True, None),
        "twilio refused (400, code 21211): The 'To' number [number] is not a valid phone number.",
        id="21211-echoing-the-number",
    ),
    pytest.param(
        twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"),
        (RECIPIENT_OPTED_OUT, True, None),
        "twilio refused (400, code 21610): Attempt to send to unsubscribed recipient",
        id="21610-opted-out",
    ),
    pytest.param(
        twilio_error(400, 21614, f"To number: {NUMBER}, is not a mobile number"),
        ("RecipientUnreachable", True, None),
        "twilio refused (400, code 21614): To number: [number], is not a mobile number",
        id="21614-not-mobile",
    ),
    pytest.param(
        twilio_error(401, 20003, "Authenticate"),
        ("Misconfigured", True, None),
        "twilio refused (401, code 20003): Authenticate",
        id="20003",
    ),
    pytest.param(
        plain(401, "Unauthorized"),
        ("Misconfigured", True, None),
        "twilio refused (401): Unauthorized",
        id="401-not-json",
    ),
    pytest.param(
        twilio_error(400, 21602, "Message body is required."),
        ("Rejected", True, None),
        "twilio refused (400, code 21602): Message body is required.",
        id="21602-no-body",
    ),
    pytest.param(
        twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit."),
        ("Rejected", True, None),
        "twilio refused (400, code 21617): The concatenated message body exceeds the 1600 "
        "character limit.",
        id="21617-too-long",
    ),
    pytest.param(
        twilio_error(
            400,
            21408,
            "Permission to send an SMS has not been enabled for the region indicated by the "
            "'To' number: +8613800138000.",
        ),
        ("Rejected", True, None),
        "twilio refused (400, code 21408): Permission to send an SMS has not been enabled for "
        "the region indicated by the 'To' number: [number].",
        id="21408-geo-permissions",
    ),
    pytest.param(
        plain(404, "Not Found"),
        ("Rejected", True, None),
        "twilio refused (404): Not Found",
        id="404-not-json",
    ),
    pytest.param(
        plain(301, "", {"Location": "https://api.twilio.com/"}),
        ("Misconfigured", True, None),
        "twilio answered 301: redirects are not followed; check the base URL",
        id="301",
    ),
]


@pytest.mark.parametrize(("queue", "expected", "message"), CLASSIFIED)
async def test_twilios_answers_are_classified(
    twilio: TwilioStandIn,
    provider: TwilioSms,
    queue: Callable[[TwilioStandIn], None],
    expected: tuple[object, ...],
    message: str,
) -> None:
    queue(twilio)
    error = await failure(provider)
    assert (classified(error), error.message) == (expected, message)
    assert len(twilio.requests) == 1
    assert_clean(error)


def test_the_opt_out_type_is_exported() -> None:
    assert RECIPIENT_OPTED_OUT == "RecipientOptedOut"


async def test_a_wrong_auth_token_is_misconfigured(
    twilio: TwilioStandIn, client: httpx.AsyncClient
) -> None:
    wrong = "0" * 32
    provider = TwilioSms(client, ACCOUNT_SID, wrong, sender=SENDER, base_url=twilio.url)
    error = await failure(provider)
    assert classified(error) == ("Misconfigured", True, None)
    assert error.message == "twilio refused (401, code 20003): Authenticate"
    assert twilio.requests[0].headers["authorization"] == basic(ACCOUNT_SID, wrong)


async def test_a_wrong_account_is_refused_with_twilios_words(
    twilio: TwilioStandIn, client: httpx.AsyncClient
) -> None:
    other = "AC" + "f" * 32
    provider = TwilioSms(client, other, AUTH_TOKEN, sender=SENDER, base_url=twilio.url)
    error = await failure(provider)
    assert classified(error) == ("Rejected", True, None)
    assert error.message == (
        f"twilio refused (404, code 20404): The requested resource "
        f"/2010-04-01/Accounts/{other}/Messages.json was not found"
    )


async def test_a_success_without_a_sid_is_not_retried(
    twilio: TwilioStandIn, provider: TwilioSms
) -> None:
    twilio.answer(200, "<html><body>Welcome to the proxy</body></html>")
    error = await failure(provider)
    assert classified(error) == ("Misconfigured", True, None)
    assert error.message == (
        f"twilio answered 200 without a message sid: is {twilio.url} Twilio's API?"
    )


async def test_a_timeout_is_retryable(twilio: TwilioStandIn, client: httpx.AsyncClient) -> None:
    provider = TwilioSms(
        client, ACCOUNT_SID, AUTH_TOKEN, sender=SENDER, base_url=twilio.url, timeout=0.5
    )
    twilio.answer(201, {"sid": "SM" + "f" * 32}, delay=3.0)
    started = asyncio.get_running_loop().time()
    error = await failure(provider)
    assert asyncio.get_running_loop().time() - started < 2.0
    assert classified(error) == ("ProviderUnavailable", False, None)
    assert error.message == "twilio: timed out after 0.5s (the SMS may have gone out)"
    assert_clean(error)


async def test_a_refused_connection_is_retryable(client: httpx.AsyncClient) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}"
    provider = TwilioSms(client, ACCOUNT_SID, AUTH_TOKEN, sender=SENDER, base_url=base_url)
    error = await failure(provider)
    assert classified(error) == ("ProviderUnavailable", False, None)
    assert error.message.startswith("twilio: no answer: ConnectError")
    assert ACCOUNT_SID not in error.message  # the URL is scrubbed from transport errors
    assert_clean(error)


# --- no secret, no number ---------------------------------------------------------------------

ECHOES = [
    f"Token {AUTH_TOKEN} is not valid for {NUMBER}",
    "The 'To' number 4915123456789 is not a valid phone number.",
    "To number: +49 151 2345 6789, is not a mobile number",
    "Blocked: (+49) 151-2345-6789 / +49.151.23456789",
    f"{{'To': '{NUMBER}', 'password': '{AUTH_TOKEN}'}}",
]


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500])
@pytest.mark.parametrize("echo", ECHOES)
async def test_no_error_holds_the_token_or_the_number(
    twilio: TwilioStandIn, provider: TwilioSms, status: int, echo: str
) -> None:
    twilio.error(status, 21211, echo)
    assert_clean(await failure(provider, OutgoingSms("msg_1", "+49 151 2345 6789", BODY)))
    twilio.answer(status, echo)  # not JSON: the body itself is quoted
    assert_clean(await failure(provider))


def test_an_outgoing_sms_does_not_print_the_number_or_the_text() -> None:
    sms = OutgoingSms("msg_1", NUMBER, "Ihr Code: 4711", status_callback=CALLBACK)
    assert repr(sms) == f"OutgoingSms(message_id='msg_1', status_callback='{CALLBACK}')"


# --- configuration ----------------------------------------------------------------------------


def test_from_environment(client: httpx.AsyncClient) -> None:
    environ = {"TWILIO_ACCOUNT_SID": f" {ACCOUNT_SID}\n", "TWILIO_AUTH_TOKEN": AUTH_TOKEN + "\n"}
    provider = TwilioSms.from_environment(client, environ, sender=SERVICE, timeout=3)
    assert (provider.name, provider.account_sid, provider.sender) == (
        "twilio",
        ACCOUNT_SID,
        SERVICE,
    )
    assert provider.url == f"https://api.twilio.com{MESSAGES}"
    assert provider.timeout == 3.0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "Twilio SMS needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN set in the environment"),
        (
            {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": "  "},
            "Twilio SMS needs TWILIO_AUTH_TOKEN set in the environment",
        ),
        (
            {"TWILIO_AUTH_TOKEN": AUTH_TOKEN},
            "Twilio SMS needs TWILIO_ACCOUNT_SID set in the environment",
        ),
    ],
)
def test_from_environment_names_what_is_missing(
    client: httpx.AsyncClient, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        TwilioSms.from_environment(client, environ, sender=SENDER)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"account_sid": "SK0123456789abcdef0123456789abcdef"},
            "the Twilio account SID (TWILIO_ACCOUNT_SID) must be AC and 32 hexadecimal digits",
        ),
        (
            {"account_sid": f"{ACCOUNT_SID}/../../x"},
            "the Twilio account SID (TWILIO_ACCOUNT_SID) must be AC and 32 hexadecimal digits",
        ),
        ({"auth_token": ""}, "the Twilio auth token (TWILIO_AUTH_TOKEN) is empty"),
        *[
            (
                {"sender": sender},
                "the Twilio sender must be a number in E.164 (+ and 8 to 15 digits, e.g. "
                "+14155550100) or a Messaging Service SID (MG and 32 hexadecimal digits)",
            )
            for sender in ["Shop", "+1 415 555 0100", "MG123", "14155550100", ""]
        ],
        (
            {"base_url": "api.twilio.com"},
            "the Twilio base URL must be an http(s) URL, such as https://api.twilio.com",
        ),
        ({"timeout": 0}, "the Twilio timeout must be more than 0 seconds"),
    ],
)
def test_bad_settings_are_refused_at_start(
    client: httpx.AsyncClient, changes: dict[str, Any], message: str
) -> None:
    settings: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "sender": SENDER,
        **changes,
    }
    with pytest.raises(ValueError) as caught:
        TwilioSms(client, **settings)
    assert str(caught.value) == message
    assert AUTH_TOKEN not in str(caught.value)


def test_the_public_surface(client: httpx.AsyncClient) -> None:
    assert sorted(activities.sms.__all__) == [
        "InvalidPhoneNumber",
        "OutgoingSms",
        "RECIPIENT_OPTED_OUT",
        "SmsProvider",
        "SmsSender",
        "SmsSettings",
        "TwilioSms",
        "is_e164",
        "normalise_e164",
    ]
    provider: SmsProvider = TwilioSms(client, ACCOUNT_SID, AUTH_TOKEN, sender=SENDER)
    assert provider.name == "twilio"
