"""SendGrid's Signed Event Webhook and event parsing, cross-checked with the sendgrid package."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sendgrid import EventWebhook, EventWebhookHeader

from ingestion.sendgrid_events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    FeedbackEvent,
    is_fresh,
    load_public_key,
    parse_events,
    read_events,
    verify,
)

# The published vector from sendgrid-python's test/unit/test_eventwebhook.py (6.12.5).
VECTOR_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw"
    "+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
VECTOR_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15Tl"
    "uLtEZtM="
)
VECTOR_TIMESTAMP = "1600112502"
VECTOR_EVENT = {
    "email": "hello@world.com",
    "event": "dropped",
    "reason": "Bounced Address",
    "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
    "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
    "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
    "timestamp": 1600112492,
}
# Compact, sorted keys, and a trailing CRLF: the exact bytes SendGrid signed.
VECTOR_BODY = (json.dumps([VECTOR_EVENT], sort_keys=True, separators=(",", ":")) + "\r\n").encode()
# Another P-256 key, from the same test file (test_verify_bad_key).
OTHER_VECTOR_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo"
    "7aNDthvj+y7GjUuFDb/R1NGe1OPzpA=="
)

MESSAGE_ID = "msg_0123456789abcdef0123456789abcdef"


def spki_base64(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as SendGrid shows it: base64 DER SubjectPublicKeyInfo, no armour."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sign(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> str:
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


@pytest.fixture(scope="module")
def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# -- the published vector -------------------------------------------------------------------


def test_header_names_match_the_package() -> None:
    assert SIGNATURE_HEADER == EventWebhookHeader.SIGNATURE
    assert TIMESTAMP_HEADER == EventWebhookHeader.TIMESTAMP


def test_published_vector_verifies_with_ours_and_sendgrids() -> None:
    ours = verify(load_public_key(VECTOR_KEY), VECTOR_BODY, VECTOR_SIGNATURE, VECTOR_TIMESTAMP)
    helper = EventWebhook(VECTOR_KEY)
    theirs = helper.verify_signature(VECTOR_BODY.decode(), VECTOR_SIGNATURE, VECTOR_TIMESTAMP)
    assert ours is True
    assert theirs is True


def test_published_vector_with_the_packages_key_object() -> None:
    """The key object the package builds works with our verify, and ours with the package."""
    package_key = EventWebhook().convert_public_key_to_ecdsa(VECTOR_KEY)
    assert verify(package_key, VECTOR_BODY, VECTOR_SIGNATURE, VECTOR_TIMESTAMP)
    assert EventWebhook().verify_signature(
        VECTOR_BODY.decode(), VECTOR_SIGNATURE, VECTOR_TIMESTAMP, load_public_key(VECTOR_KEY)
    )


@pytest.mark.parametrize(
    ("key", "body", "signature", "timestamp"),
    [
        pytest.param(OTHER_VECTOR_KEY, VECTOR_BODY, VECTOR_SIGNATURE, VECTOR_TIMESTAMP, id="key"),
        pytest.param(VECTOR_KEY, b"payload", VECTOR_SIGNATURE, VECTOR_TIMESTAMP, id="payload"),
        pytest.param(VECTOR_KEY, VECTOR_BODY, VECTOR_SIGNATURE, "timestamp", id="timestamp"),
        pytest.param(
            VECTOR_KEY, VECTOR_BODY.rstrip(), VECTOR_SIGNATURE, VECTOR_TIMESTAMP, id="crlf"
        ),
        pytest.param(
            VECTOR_KEY,
            VECTOR_BODY,
            "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=",
            VECTOR_TIMESTAMP,
            id="signature",
        ),
    ],
)
def test_published_vector_negatives_agree(
    key: str, body: bytes, signature: str, timestamp: str
) -> None:
    """The package's own negative cases (plus a body without its CRLF): both say no."""
    assert verify(load_public_key(key), body, signature, timestamp) is False
    assert EventWebhook(key).verify_signature(body.decode(), signature, timestamp) is False


def test_re_serialised_json_does_not_verify() -> None:
    """Only the raw body verifies: parsing and dumping the JSON again changes the bytes."""
    reserialised = json.dumps(json.loads(VECTOR_BODY)).encode()
    assert (
        verify(load_public_key(VECTOR_KEY), reserialised, VECTOR_SIGNATURE, VECTOR_TIMESTAMP)
        is False
    )


def test_published_vector_parses_to_a_suppression() -> None:
    [event] = parse_events(VECTOR_BODY)
    assert event == FeedbackEvent(
        sg_event_id=VECTOR_EVENT["sg_event_id"],  # type: ignore[arg-type]
        kind="suppression",
        sendgrid_event="dropped",
        email="hello@world.com",
        timestamp=datetime(2020, 9, 14, 19, 41, 32, tzinfo=UTC),
        reason="dropped",
        detail="Bounced Address",
        sg_message_id=VECTOR_EVENT["sg_message_id"],  # type: ignore[arg-type]
    )


# -- a key pair of our own ------------------------------------------------------------------


def test_own_signature_verifies_and_the_package_agrees(
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    body = json.dumps([{"event": "open", "email": "ana@example.com"}]).encode() + b"\r\n"
    signature = sign(private_key, body, "1700000000")
    public = load_public_key(spki_base64(private_key))
    assert verify(public, body, signature, "1700000000") is True
    helper = EventWebhook(spki_base64(private_key))
    assert helper.verify_signature(body.decode(), signature, "1700000000") is True


def test_non_ascii_body_is_signed_as_raw_bytes(private_key: ec.EllipticCurvePrivateKey) -> None:
    body = '[{"email":"zoë@example.com","event":"open"}]'.encode()
    signature = sign(private_key, body, "1700000000")
    public = load_public_key(spki_base64(private_key))
    assert verify(public, body, signature, "1700000000")
    assert EventWebhook().verify_signature(body.decode(), signature, "1700000000", public)


@pytest.mark.parametrize(
    ("body", "timestamp"),
    [
        pytest.param(b'[{"event":"open","email":"ana@example.com"}]!', "1700000000", id="body"),
        pytest.param(b'[{"event":"open","email":"ana@example.com"}]', "1700000001", id="time"),
        pytest.param(b"", "1700000000", id="empty-body"),
        pytest.param(b'[{"event":"open","email":"ana@example.com"}]', "", id="empty-time"),
    ],
)
def test_tampering_is_rejected(
    private_key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str
) -> None:
    original = b'[{"event":"open","email":"ana@example.com"}]'
    signature = sign(private_key, original, "1700000000")
    public = load_public_key(spki_base64(private_key))
    assert verify(public, original, signature, "1700000000") is True
    assert verify(public, body, signature, timestamp) is False


def test_moving_bytes_between_timestamp_and_body_is_not_detected(
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    """A property of SendGrid's scheme (no separator), pinned so nobody relies on otherwise.
    Harmless for real posts: a body starts with ``[`` and a timestamp is digits, so a shifted
    split gives a non-digit timestamp (``is_fresh`` says no) or a body that is not JSON."""
    signature = sign(private_key, b"0[]", "170000000")
    public = load_public_key(spki_base64(private_key))
    assert verify(public, b"[]", signature, "1700000000") is True


def test_signature_from_another_key_is_rejected(
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    body = b'[{"event":"delivered"}]'
    signature = sign(other, body, "1700000000")
    assert verify(load_public_key(spki_base64(private_key)), body, signature, "1700000000") is False


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("", id="empty"),
        pytest.param("not base64 at all!", id="garbage"),
        pytest.param("QUJD", id="base64-not-der"),
        pytest.param("MEUCIGHQ", id="truncated-der"),
        pytest.param("QUJD\x00", id="nul"),
        pytest.param("zoë", id="non-ascii"),
        pytest.param("QUJ", id="bad-padding"),
        pytest.param(None, id="none"),
        pytest.param(b"QUJD", id="bytes"),
    ],
)
def test_malformed_signature_is_false_not_an_exception(
    private_key: ec.EllipticCurvePrivateKey, signature: Any
) -> None:
    public = load_public_key(spki_base64(private_key))
    assert verify(public, b"[]", signature, "1700000000") is False


@pytest.mark.parametrize("timestamp", [None, 1700000000, b"1700000000"])
def test_malformed_timestamp_is_false_not_an_exception(
    private_key: ec.EllipticCurvePrivateKey, timestamp: Any
) -> None:
    signature = sign(private_key, b"[]", "1700000000")
    public = load_public_key(spki_base64(private_key))
    assert verify(public, b"[]", signature, timestamp) is False


def test_str_payload_is_false_not_an_exception(private_key: ec.EllipticCurvePrivateKey) -> None:
    signature = sign(private_key, b"[]", "1700000000")
    public = load_public_key(spki_base64(private_key))
    assert verify(public, "[]", signature, "1700000000") is False  # type: ignore[arg-type]


def test_high_s_twin_of_a_signature_also_verifies(
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    """ECDSA signatures are malleable; dedupe must key on sg_event_id, never the signature."""
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    raw = private_key.sign(b"1700000000[]", ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(raw)
    twin = base64.b64encode(encode_dss_signature(r, order - s)).decode()
    public = load_public_key(spki_base64(private_key))
    assert verify(public, b"[]", twin, "1700000000") is True


# -- loading the key ------------------------------------------------------------------------


def test_load_public_key_accepts_pem_and_wrapped_base64(
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    wrapped = "\n".join(spki_base64(private_key)[i : i + 64] for i in range(0, 120, 64)) + "\n"
    expected = private_key.public_key().public_numbers()
    assert load_public_key(pem).public_numbers() == expected
    assert load_public_key(f"  {spki_base64(private_key)}\n").public_numbers() == expected
    assert load_public_key(wrapped).public_numbers() == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("not a key", id="garbage"),
        pytest.param("QUJDRA==", id="base64-not-der"),
        pytest.param(VECTOR_KEY[:-10], id="truncated"),
        pytest.param("-----BEGIN PUBLIC KEY-----\nQUJD\n-----END PUBLIC KEY-----", id="bad-pem"),
        pytest.param("zoë", id="non-ascii"),
    ],
)
def test_load_public_key_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="verification key"):
        load_public_key(text)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(ec.generate_private_key(ec.SECP384R1()), id="p384"),
        pytest.param(rsa.generate_private_key(public_exponent=65537, key_size=1024), id="rsa"),
    ],
)
def test_load_public_key_rejects_other_key_types(key: Any) -> None:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="P-256"):
        load_public_key(base64.b64encode(der).decode())


def test_load_public_key_rejects_a_private_key(private_key: ec.EllipticCurvePrivateKey) -> None:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(ValueError, match="verification key"):
        load_public_key(pem)


# -- freshness ------------------------------------------------------------------------------

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW_TS = str(int(NOW.timestamp()))


@pytest.mark.parametrize(
    ("timestamp", "fresh"),
    [
        (NOW_TS, True),
        (str(int(NOW.timestamp()) - 600), True),  # exactly the tolerance
        (str(int(NOW.timestamp()) + 600), True),  # a sender clock ahead of ours
        (str(int(NOW.timestamp()) - 601), False),
        (str(int(NOW.timestamp()) + 601), False),
        ("", False),
        ("timestamp", False),
        ("-1", False),
        ("1.5", False),
        ("١٧٠٠٠٠٠٠٠٠", False),  # Arabic-Indic digits: isdigit() but not a header value
        ("9" * 40, False),
        (None, False),
    ],
)
def test_is_fresh(timestamp: Any, fresh: bool) -> None:
    assert is_fresh(timestamp, NOW) is fresh


def test_is_fresh_custom_tolerance_and_naive_now() -> None:
    day_old = str(int((NOW - timedelta(hours=23)).timestamp()))
    assert is_fresh(day_old, NOW) is False
    assert is_fresh(day_old, NOW, tolerance=timedelta(hours=24)) is True
    with pytest.raises(ValueError, match="timezone-aware"):
        is_fresh(NOW_TS, NOW.replace(tzinfo=None))


# -- parsing --------------------------------------------------------------------------------


def sg_event(event: str, n: int = 1, **fields: Any) -> dict[str, Any]:
    """An event as SendGrid posts it, with Touchpoint's custom args at the top level."""
    return {
        "email": "ana@example.com",
        "timestamp": 1700000000 + n,
        "event": event,
        "sg_event_id": f"evt-{event}-{n}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "category": ["welcome"],
        "touchpoint_message_id": MESSAGE_ID,
        "journey": "welcome",
        "step": "send_welcome",
        **fields,
    }


def parse(*events: dict[str, Any]) -> list[FeedbackEvent]:
    return parse_events(json.dumps(list(events)).encode())


@pytest.mark.parametrize(
    ("event", "name"),
    [("delivered", "email.delivered"), ("open", "email.opened"), ("click", "email.clicked")],
)
def test_engagement_events_map_to_touchpoint_events(event: str, name: str) -> None:
    [parsed] = parse(sg_event(event))
    assert parsed.kind == "event"
    assert parsed.name == name
    assert not parsed.suppresses_address and not parsed.withdraws_marketing
    assert parsed.sendgrid_event == event
    assert parsed.reason is None
    assert parsed.sg_event_id == f"evt-{event}-1"
    assert parsed.email == "ana@example.com"
    assert parsed.timestamp == datetime.fromtimestamp(1700000001, UTC)
    assert (parsed.message_id, parsed.journey, parsed.step) == (
        MESSAGE_ID,
        "welcome",
        "send_welcome",
    )


def test_click_keeps_its_url_and_others_do_not() -> None:
    click, opened = parse(
        sg_event(
            "click", url="https://shop.example.com/sale?utm_source=x", url_offset={"index": 0}
        ),
        sg_event("open", url="https://ignored.example.com"),
    )
    assert click.url == "https://shop.example.com/sale?utm_source=x"
    assert opened.url is None


ADDRESS, MARKETING, INFORMATIONAL = "suppresses the address", "withdraws marketing", "neither"


@pytest.mark.parametrize(
    ("event", "fields", "reason", "detail", "effect"),
    [
        (
            "bounce",
            {"type": "bounce", "reason": "550 no such user"},
            "bounce",
            "550 no such user",
            ADDRESS,
        ),
        (
            "bounce",
            {"type": "blocked", "reason": "blocked by spam"},
            "blocked",
            "blocked by spam",
            INFORMATIONAL,
        ),
        ("bounce", {"reason": "no type field"}, "bounce", "no type field", ADDRESS),
        (
            "dropped",
            {"reason": "Unsubscribed Address"},
            "dropped",
            "Unsubscribed Address",
            INFORMATIONAL,
        ),
        ("spamreport", {}, "spamreport", None, ADDRESS),
        ("unsubscribe", {}, "unsubscribe", None, MARKETING),
        ("group_unsubscribe", {"asm_group_id": 42}, "group_unsubscribe", None, MARKETING),
    ],
)
def test_suppressions(
    event: str, fields: dict[str, Any], reason: str, detail: str | None, effect: str
) -> None:
    """Feedback is one of three sorts: a hard bounce or spam report suppresses the address
    (all email), an unsubscribe withdraws marketing consent, the rest only informs."""
    [parsed] = parse(sg_event(event, **fields))
    assert parsed.sendgrid_event == event
    assert parsed.kind == "suppression"
    assert parsed.name is None
    assert parsed.reason == reason
    assert parsed.detail == detail
    assert (parsed.suppresses_address, parsed.withdraws_marketing) == (
        effect == ADDRESS,
        effect == MARKETING,
    )
    assert parsed.email == "ana@example.com"
    assert parsed.message_id == MESSAGE_ID
    assert parsed.journey == "welcome"
    assert parsed.step == "send_welcome"
    assert parsed.asm_group_id == (42 if reason == "group_unsubscribe" else None)


@pytest.mark.parametrize(
    "event",
    ["processed", "deferred", "group_resubscribe", "account_status_change", "something_new"],
)
def test_other_events_are_ignored(event: str) -> None:
    assert parse(sg_event(event)) == []


def test_ignored_events_need_only_an_event_name() -> None:
    """Account events carry no email; they must not fail the batch."""
    body = [{"event": "account_status_change", "type": "compliance_suspend", "timestamp": 1}]
    assert parse(*body, sg_event("open")) == parse(sg_event("open"))


def test_mixed_batch_keeps_order_and_drops_repeated_event_ids() -> None:
    batch = [
        sg_event("processed"),
        sg_event("delivered"),
        sg_event("open", 1),
        sg_event("open", 1),  # SendGrid repeats events: the same sg_event_id
        sg_event("open", 2),
        sg_event("unsubscribe"),
    ]
    parsed = parse(*batch)
    assert [(e.sg_event_id, e.name or e.reason) for e in parsed] == [
        ("evt-delivered-1", "email.delivered"),
        ("evt-open-1", "email.opened"),
        ("evt-open-2", "email.opened"),
        ("evt-unsubscribe-1", "unsubscribe"),
    ]


def test_natural_key_for_repeats_with_a_new_event_id() -> None:
    first, again = parse(
        sg_event("click", url="https://x.example"),
        sg_event("click", url="https://x.example", sg_event_id="evt-other"),
    )
    assert first.sg_event_id != again.sg_event_id
    assert first.natural_key == again.natural_key


def test_custom_args_are_optional_and_test_sends_are_flagged() -> None:
    bare = sg_event("open")
    for key in ("touchpoint_message_id", "journey", "step", "sg_message_id"):
        del bare[key]
    [parsed] = parse(bare)
    assert (parsed.message_id, parsed.journey, parsed.step, parsed.sg_message_id) == (None,) * 4
    assert parsed.test is False
    [preview] = parse(sg_event("delivered", test="true"))
    assert preview.test is True


def test_float_timestamp_and_numeric_custom_arg() -> None:
    [parsed] = parse(sg_event("open", timestamp=1700000000.5, step=3))
    assert parsed.timestamp == datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)
    assert parsed.step == "3"


def test_empty_batch() -> None:
    assert parse_events(b"[]") == []
    assert parse_events(b" [ ]\r\n") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b'[{"event":"open","timestamp":NaN}]', "not JSON"),
        (b'{"event":"open"}', "JSON array of events, not an object"),
        (b'"events"', "JSON array of events, not a string"),
        (b"null", "JSON array of events, not null"),
        (b"[1]", "event 0 must be an object, not a number"),
        (b"[[]]", "event 0 must be an object, not an array"),
        (b'[{"email":"a@example.com"}]', "event 0: 'event' must be a non-empty string"),
        (b'[{"event":5}]', "event 0: 'event' must be a non-empty string"),
        (b'[{"event":""}]', "event 0: 'event' must be a non-empty string"),
    ],
)
def test_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_events(body)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sg_event_id": ""}, r"event 1 \(open\): 'sg_event_id' must be a non-empty string"),
        ({"sg_event_id": 7}, "'sg_event_id' must be a non-empty string"),
        ({"email": None}, "'email' must be a non-empty string"),
        ({"email": ["a@example.com"]}, "'email' must be a non-empty string"),
        ({"timestamp": None}, "'timestamp' must be unix seconds"),
        ({"timestamp": "1700000000"}, "'timestamp' must be unix seconds"),
        ({"timestamp": True}, "'timestamp' must be unix seconds"),
        ({"timestamp": 10**20}, "'timestamp' .* out of range"),
        ({"journey": {"id": "x"}}, "'journey' must be a string, not an object"),
        ({"url": ["x"]}, "'url' must be a string, not an array"),
    ],
)
def test_malformed_events_name_the_event_and_field(change: dict[str, Any], message: str) -> None:
    broken = {**sg_event("open" if "url" not in change else "click"), **change}
    with pytest.raises(ValueError, match=message):
        parse(sg_event("delivered"), broken)


def test_one_unreadable_event_is_reported_and_the_others_are_kept() -> None:
    without_id = {k: v for k, v in sg_event("open").items() if k != "sg_event_id"}
    broken = {**sg_event("click"), "timestamp": "yesterday"}
    posted = [sg_event("delivered"), broken, without_id, without_id]
    events, problems = read_events(enumerate(posted))
    assert [e.sendgrid_event for e in events] == ["delivered", "open"]  # the copy: once
    assert events[1].sg_event_id.startswith("derived-")
    assert problems == [(1, "event 1 (click): 'timestamp' must be unix seconds (a number)")]
    again, _ = read_events([(0, without_id)])
    assert again[0].sg_event_id == events[1].sg_event_id, "derived from the content: stable"


def test_malformed_asm_group_id() -> None:
    with pytest.raises(ValueError, match="'asm_group_id' must be an integer"):
        parse(sg_event("group_unsubscribe", asm_group_id="forty-two"))
    [parsed] = parse(sg_event("group_unsubscribe", asm_group_id="42"))
    assert parsed.asm_group_id == 42


def test_the_value_error_message_says_what_is_wrong_for_a_400() -> None:
    with pytest.raises(ValueError) as caught:
        parse_events(b'{"not": "an array"}')
    assert str(caught.value) == "body must be a JSON array of events, not an object"
