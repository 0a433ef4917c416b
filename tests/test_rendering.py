"""Rendering real templates: locales, money and dates, escaping, CSS, errors, the sandbox.

No mocks: every test renders files through :class:`activities.rendering.Renderer`. Golden files
under ``tests/golden/`` hold every example email in en and de; ``UPDATE_GOLDEN=1`` rewrites them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.rendering import MAX_OUTPUT_BYTES, Renderer
from language.validator import validate
from tests.conftest import ROOT
from workflows import evaluation
from workflows.models import Profile, SendRequest
from workflows.plan import SendNode

TEMPLATES = ROOT / "templates"
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"
UNSUBSCRIBE_URL = "https://shop.laptops.example/unsubscribe?token=tok_test_123"
NOW = "2024-05-14T08:00:00+00:00"

PRODUCTS = [
    {
        "name": "Aurora 14 Ultrabook",
        "price": 1299,
        "currency": "EUR",
        "url": "https://shop.laptops.example/p/aurora-14",
        "image_url": "https://cdn.laptops.example/img/aurora-14.jpg",
        "highlights": ["1.2 kg", "18 h battery", "OLED display"],
    },
    {
        "name": "Vector 16 Gaming",
        "price": 1849.5,
        "currency": "EUR",
        "url": "https://shop.laptops.example/p/vector-16",
        "image_url": "",
        "highlights": [],
    },
]
ACCESSORIES = [
    {
        "name": "USB-C Dock Pro",
        "price": 149.99,
        "currency": "EUR",
        "url": "https://shop.laptops.example/p/usb-c-dock-pro",
        "image_url": "https://cdn.laptops.example/img/dock.jpg",
        "highlights": ["2 × 4K", "100 W charging"],
    }
]


def context() -> dict[str, Any]:
    """A realistic, fixed context (what the journey workflow passes)."""
    order = {
        "order_id": "ORD-2024-0815",
        "categories": ["laptops"],
        "products": [{"name": "Aurora 14 Ultrabook", "category": "laptops", "price": 1299}],
        "total": 1299,
        "currency": "EUR",
        "warranty_ends": "2026-05-02",  # the warranty reminder's date
    }
    return {
        "event": {
            "event": "Order Completed",
            "properties": order,
            "timestamp": "2024-05-02T14:30:00+00:00",
            "message_id": "evt_1",
        },
        "events": {
            "delivery": {
                "event": "Order Delivered",
                "properties": {"order_id": "ORD-2024-0815"},
                "timestamp": "2024-05-06T11:00:00+00:00",
                "message_id": "evt_2",
            },
            "answer": {
                "event": "Survey Answered",
                "properties": {"order_id": "ORD-2024-0815", "score": 3},
                "timestamp": "2024-05-13T09:00:00+00:00",
                "message_id": "evt_3",
            },
        },
        "vars": {"topic": "laptops", "score": 3},
        "lookups": {
            "laptops": {"products": PRODUCTS},
            "accessories": {"products": ACCESSORIES},
        },
        "now": NOW,
    }


def profile(locale: str | None = "en", **traits: Any) -> Profile:
    base = {"first_name": "Anna", "city": "Berlin", "interests": ["laptops"]}
    return Profile(
        id="cus_4711",
        email="anna@example.com",
        locale=locale,
        timezone="Europe/Berlin",
        traits={**base, **traits},
    )


def request(
    template: str,
    *,
    locale: str | None = "en",
    channel: str = "email",
    category: str = "marketing",
    person: Profile | None = None,
    ctx: dict[str, Any] | None = None,
) -> SendRequest:
    return SendRequest(
        message_id="msg_0123456789abcdef",
        journey_id="post-purchase-accessories",
        journey_version="v1",
        category=category,  # type: ignore[arg-type]
        step_id="step-1",
        channel=channel,  # type: ignore[arg-type]
        template=template,
        customer_id="cus_4711",
        profile=person or profile(locale),
        context=context() if ctx is None else ctx,
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(
        TEMPLATES,
        "en",
        default_timezone="Europe/Berlin",
        journey_names={"post-purchase-accessories": "After a laptop purchase"},
    )


def make_templates(root: Path, files: dict[str, str]) -> Renderer:
    """A throwaway templates folder (with the real shared layouts) and its renderer."""
    for name, text in files.items():
        path = root / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for shared in ("_layouts", "_partials"):
        target = root / "templates" / shared
        if not target.exists():
            target.mkdir(parents=True)
            for source in (TEMPLATES / shared).iterdir():
                (target / source.name).write_text(source.read_text("utf-8"), encoding="utf-8")
    return Renderer(root / "templates", "en")


def render_error(renderer: Renderer, req: SendRequest) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        renderer.render(req)
    error = caught.value
    assert error.type == "RenderError"
    assert error.non_retryable
    return error


# --- money, numbers, dates ---------------------------------------------------------------------


def test_money_is_formatted_per_locale(tmp_path: Path) -> None:
    r = make_templates(
        tmp_path,
        {
            "price/en.md": "{{ 1299 | money('EUR') }}",
            "price/de.md": "{{ 1299 | money('EUR') }}",
        },
    )
    assert r.render(request("price", channel="chat", locale="de")).text == "1.299,00\u00a0€\n"
    assert r.render(request("price", channel="chat", locale="en")).text == "€1,299.00\n"
    # the product cards of a real email use it too
    real = Renderer(TEMPLATES, "en")
    de = real.render(request("laptop-picks", locale="de"))
    en = real.render(request("laptop-picks", locale="en"))
    assert "1.299,00&nbsp;€" in (de.html or "")  # the inliner writes U+00A0 as &nbsp;
    assert "1.849,50&nbsp;€" in (de.html or "")
    assert "1.299,00 €" in (de.text or "")  # the derived text has a plain space
    assert "€1,299.00" in (en.text or "") and "€1,849.50" in (en.html or "")
    assert "1299.00" not in (de.html or "") + (en.html or "")


def test_number_date_and_datetime_filters(tmp_path: Path) -> None:
    body = (
        "{{ 1234.5 | number }}|{{ 1234.5 | number(2) }}|{{ '2024-05-02' | date }}|"
        "{{ event.timestamp | date('long') }}|{{ now | datetime('short') }}|"
        "{{ '2024-12-31T23:30:00Z' | date }}"
    )
    r = make_templates(tmp_path, {"f/en.txt": body, "f/de.txt": body})
    de = r.render(request("f", channel="chat", locale="de")).text
    en = r.render(request("f", channel="chat", locale="en")).text
    # 23:30 UTC on New Year's Eve is already 2025 in Berlin (the profile's time zone)
    assert de == "1.234,5|1.234,50|02.05.2024|2. Mai 2024|14.05.24, 10:00|01.01.2025\n"
    assert en == "1,234.5|1,234.50|May 2, 2024|May 2, 2024|5/14/24, 10:00\u202fAM|Jan 1, 2025\n"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{{ 'abc' | money('EUR') }}", "money: expected a number"),
        ("{{ 12 | money('EURO') }}", "not a currency code"),
        ("{{ 12 | money(none) }}", "not a currency code"),
        ("{{ 12 | number('x') }}", "decimals must be a whole number"),
        ("{{ 'yesterday' | date }}", "date: expected a date"),
        ("{{ now | date(42) }}", "format must be"),
        ("{{ '2024-05-02' | date('HH:mm') }}", "date: 'datetime.date' object has no attribute"),
        ("{{ profile.traits.shoe_size | number }}", "shoe_size"),
    ],
)
def test_filters_reject_bad_input_as_render_errors(
    tmp_path: Path, expression: str, expected: str
) -> None:
    r = make_templates(tmp_path, {"f/en.txt": f"ok\n{expression}\n"})
    error = render_error(r, request("f", channel="chat"))
    assert expected in error.message
    assert "templates/f/en.txt line 2" in error.message


def test_filters_work_in_expressions_too() -> None:
    names = {"profile": {"locale": "de", "timezone": "Europe/Berlin"}}
    assert evaluation.evaluate("1299 | money('EUR')", names) == "1.299,00\u00a0€"
    assert evaluation.evaluate("1299 | money('EUR')", {"profile": {}}) == "€1,299.00"


# --- locales -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "used"),
    [
        ("de-AT", "de"),
        ("de_AT", "de"),
        ("DE", "de"),
        ("de", "de"),
        ("fr", "en"),
        ("fr-CA", "en"),
        (None, "en"),
        ("", "en"),
        ("../../etc/passwd", "en"),
    ],
)
def test_locale_falls_back(renderer: Renderer, wanted: str | None, used: str) -> None:
    message = renderer.render(request("newsletter-welcome", locale=wanted))
    assert message.locale == used
    assert ("Willkommen" in (message.subject or "")) == (used == "de")


def test_the_most_specific_variant_wins(tmp_path: Path) -> None:
    r = make_templates(
        tmp_path,
        {
            "hi/en.md": "en {{ 5 | money('EUR') }}",
            "hi/de.md": "de",
            "hi/de-AT.md": "de-AT {{ 5 | money('EUR') }}",
        },
    )
    at = r.render(request("hi", channel="chat", locale="de-AT"))
    assert (at.locale, at.text) == ("de-AT", "de-AT €\u00a05,00\n")
    assert r.render(request("hi", channel="chat", locale="de-CH")).locale == "de"
    # a French reader of the English fallback sees English formatting, not French
    fr = r.render(request("hi", channel="chat", locale="fr"))
    assert (fr.locale, fr.text) == ("en", "en €5.00\n")


def test_subject_falls_back_to_the_default_locale(tmp_path: Path) -> None:
    r = make_templates(
        tmp_path,
        {
            "x/en.html": "---\nsubject: Hello {{ profile.id }}\n---\n<p>en</p>",
            "x/de.html": "<p>de</p>",
        },
    )
    message = r.render(request("x", locale="de"))
    assert (message.locale, message.subject) == ("de", "Hello cus_4711")
    assert "<p>de</p>" in (message.html or "")


# --- escaping, headers, CSS, text part ---------------------------------------------------------


def test_html_is_escaped_but_subject_and_text_are_not(renderer: Renderer) -> None:
    evil = "<script>alert(1)</script>"
    message = renderer.render(
        request("first-order-discount", person=profile("en", first_name=evil)),
        unsubscribe_url=UNSUBSCRIBE_URL,
    )
    assert "<script>" not in (message.html or "")
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt;," in (message.html or "")
    assert message.subject == f"{evil}, here's 10% off your first order"
    assert (message.text or "").startswith(f"Hi {evil},\n")  # from en.txt: plain text


def test_subject_is_one_line(renderer: Renderer) -> None:
    name = "Anna\r\nBcc: victim@example.com\n\n  X"
    message = renderer.render(request("newsletter-welcome", person=profile("en", first_name=name)))
    assert message.subject == "Welcome to Example Laptop Shop, Anna Bcc: victim@example.com X!"
    assert message.preheader == "Thanks for subscribing – here's what you can look forward to."


def test_css_is_inlined(renderer: Renderer) -> None:
    html = renderer.render(request("newsletter-welcome")).html or ""
    assert '<h1 style="' in html
    assert '<a class="button" href="https://shop.laptops.example" style="' in html
    assert "@media (max-width: 620px)" in html  # kept in a <style>: it cannot be inlined
    assert ".content { padding: 32px; }" not in html  # inlined rules leave the <style>
    assert html.startswith("<!DOCTYPE html>")


def test_remote_stylesheets_are_not_fetched(tmp_path: Path) -> None:
    r = make_templates(
        tmp_path,
        {
            "x/en.html": "---\nsubject: s\n---\n"
            '<html><head><link rel="stylesheet" href="http://127.0.0.1:9/evil.css">'
            "<style>p { color: red; }</style></head><body><p>hi</p></body></html>"
        },
    )
    html = r.render(request("x")).html or ""
    assert '<p style="color: red;">hi</p>' in html


def test_text_is_derived_from_html_when_there_is_no_txt(renderer: Renderer) -> None:
    message = renderer.render(request("laptop-picks"), unsubscribe_url=UNSUBSCRIBE_URL)
    text = message.text or ""
    assert "Laptops picked for you" in text
    assert "Aurora 14 Ultrabook (https://shop.laptops.example/p/aurora-14)" in text
    assert " * 18 h battery" in text
    assert f"Unsubscribe ({UNSUBSCRIBE_URL})" in text
    assert "<" not in text.replace("<b>", "")
    assert "{" not in text and "@media" not in text and "\n\n\n" not in text


def test_unsubscribe_link_only_when_given(renderer: Renderer) -> None:
    marketing = renderer.render(request("apology", locale="de"), unsubscribe_url=UNSUBSCRIBE_URL)
    assert f'<a href="{UNSUBSCRIBE_URL}" style="color: #616e7c;">Abmelden</a>' in (
        marketing.html or ""
    )
    transactional = renderer.render(request("apology", locale="de", category="transactional"))
    assert "Abmelden" not in (transactional.html or "")
    assert "unsubscribe" not in (transactional.html or "").lower()


# --- chat and webhook --------------------------------------------------------------------------


def test_webhook_renders_to_data(renderer: Renderer) -> None:
    message = renderer.render(request("crm-detractor", channel="webhook", locale="de"))
    assert message.locale == "en"
    assert message.data == {
        "type": "nps_detractor",
        "customer_id": "cus_4711",
        "order_id": "ORD-2024-0815",
        "score": 3,
        "journey_id": "post-purchase-accessories",
        "message_id": "msg_0123456789abcdef",
    }
    assert message.subject is None and message.html is None


def test_invalid_json_is_a_render_error(tmp_path: Path) -> None:
    r = make_templates(tmp_path, {"hook/en.json": '{\n  "name": {{ profile.id }}\n}\n'})
    error = render_error(r, request("hook", channel="webhook"))
    assert "templates/hook/en.json line 2" in error.message
    assert "not valid JSON" in error.message


def test_chat_templates_render_text(renderer: Renderer) -> None:
    alert = renderer.render(request("detractor-alert", channel="chat"))
    assert alert.text == (
        ":warning: **Detractor feedback: 3/10**\n"
        "Order `ORD-2024-0815` · customer `cus_4711`\n"
        "The customer was sent an apology saying support will get in touch – please follow up"
        " within one business day.\n"
        "_Journey: After a laptop purchase_\n"
    )
    late = renderer.render(request("delivery-late-alert", channel="chat", locale="de"))
    assert late.locale == "en"
    assert "Order `ORD-2024-0815` (placed May 2, 2024)" in (late.text or "")
    assert late.html is None and late.subject is None


# --- errors ------------------------------------------------------------------------------------


def test_missing_variable_names_file_line_and_variable(tmp_path: Path) -> None:
    r = make_templates(
        tmp_path,
        {
            "welcome/en.html": "---\nsubject: Hi\n---\n"
            "<p>Hello</p>\n"
            "<p>{{ profile.traits.first_name }}</p>\n",
        },
    )
    person = Profile(id="c1", locale="en", traits={})
    error = render_error(r, request("welcome", person=person))
    assert error.message.startswith("templates/welcome/en.html line 5: ")
    assert "'dict object' has no attribute 'first_name'" in error.message
    assert '"first_name"' in error.message


def test_missing_variable_in_subject_and_in_a_partial(tmp_path: Path) -> None:
    r = make_templates(
        tmp_path,
        {
            "a/en.html": "---\npreheader: x\nsubject: '{{ vars.coupon }}'\n---\n<p>a</p>",
            "b/en.html": "---\nsubject: b\n---\n{% include '_partials/extra.html' %}",
            "_partials/extra.html": "<p>\n\n{{ nickname }}</p>",
        },
    )
    error = render_error(r, request("a"))
    assert error.message.startswith("templates/a/en.html line 3: ")
    assert "coupon" in error.message
    error = render_error(r, request("b"))
    assert error.message.startswith("templates/_partials/extra.html line 3 ")
    assert "(rendering templates/b/en.html)" in error.message
    assert "'nickname' is undefined" in error.message


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    r = make_templates(tmp_path, {"x/en.html": "---\nsubject: s\n---\n<p>\n{% if %}</p>"})
    error = render_error(r, request("x"))
    assert error.message.startswith("templates/x/en.html line 5: template syntax: ")


@pytest.mark.parametrize(
    ("template", "locale", "expected"),
    [
        ("nope", "en", 'unknown template "nope"'),
        ("../templates/apology", "en", "is not a template name"),
        ("_layouts", "en", "is not a template name"),
        ("crm-detractor", "de", 'template "crm-detractor" has no variant'),
    ],
)
def test_missing_templates_are_render_errors(
    renderer: Renderer, template: str, locale: str, expected: str
) -> None:
    # crm-detractor exists only as JSON: it has no email variant in any locale
    error = render_error(renderer, request(template, locale=locale))
    assert expected in error.message


def test_missing_default_locale_variant(tmp_path: Path) -> None:
    r = make_templates(tmp_path, {"only-de/de.html": "---\nsubject: s\n---\nhallo"})
    assert r.render(request("only-de", locale="de")).locale == "de"
    error = render_error(r, request("only-de", locale="fr"))
    assert "templates/only-de/fr.html|txt" in error.message
    assert "templates/only-de/en.html|txt" in error.message


# --- the sandbox -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "SecurityError: access to attribute '__class__' of 'str' object is unsafe",
        ),
        (
            "{{ profile|attr('__class__') }}",
            "SecurityError: access to attribute '__class__' of 'dict' object is unsafe",
        ),
        ("{{ 'x' * 10**9 }}", "SecurityError: repeating would build more than 100000 items"),
        ("{{ 10 ** (10**8) }}", "SecurityError: exponent 100000000 is larger than 1000"),
        (
            "{{ lookups.__init__.__globals__ }}",
            "SecurityError: access to attribute '__init__' of 'dict' object is unsafe",
        ),
        (
            "{{ cycler.__init__.__globals__.os }}",
            "SecurityError: access to attribute '__init__' of 'type' object is unsafe",
        ),
        (
            "{% for i in range(10**9) %}{% endfor %}",
            "OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE",
        ),
        (
            "{{ lipsum.__globals__['os'] }}",
            "SecurityError: access to attribute '__globals__' of 'function' object is unsafe",
        ),
        (
            "{{ self.__init__ }}",
            "access to attribute '__init__' of 'TemplateReference' object is unsafe",
        ),
        ("{{ vars.update({'a': 1}) }}", "SecurityError: access to attribute 'update'"),
        ("{% include '/etc/passwd' %}", "TemplateNotFound: '/etc/passwd' not found"),
        ("{% include '../touchpoint.yaml' %}", "TemplateNotFound: ../touchpoint.yaml"),
    ],
)
def test_injection_payloads_are_refused(tmp_path: Path, payload: str, expected: str) -> None:
    r = make_templates(tmp_path, {"evil/en.html": f"---\nsubject: s\n---\n<p>\n{payload}\n</p>"})
    error = render_error(r, request("evil"))
    assert error.message.startswith("templates/evil/en.html line 5: ")
    assert expected in error.message


def test_injection_payload_in_data_is_just_text(renderer: Renderer) -> None:
    payload = "{{ ''.__class__.__mro__ }}{% include '/etc/passwd' %}"
    message = renderer.render(
        request("newsletter-welcome", person=profile("en", first_name=payload))
    )
    assert message.subject == f"Welcome to Example Laptop Shop, {payload}!"
    assert "Welcome, {{ ''.__class__.__mro__ }}{% include '/etc/passwd' %}!" in (message.html or "")


def test_output_size_is_capped(tmp_path: Path) -> None:
    # Few long pieces, not many short ones: the CPU-time limit must not trip first on a busy CI.
    line = "abcdefghij" * 100
    r = make_templates(
        tmp_path,
        {
            "big/en.html": f"---\nsubject: s\n---\n{{% for i in range(600) %}}{line}{{% endfor %}}",
            "big/en.txt": "small",
            "nearly/en.md": f"{{% for i in range(500) %}}{line}{{% endfor %}}",
        },
    )
    error = render_error(r, request("big"))
    assert (
        error.message
        == f"templates/big/en.html: renders to more than {MAX_OUTPUT_BYTES // 1024} KB"
    )
    assert len(r.render(request("nearly", channel="chat")).text or "") == 500_001


def test_multibyte_output_is_capped_in_bytes(tmp_path: Path) -> None:
    loop = "{% for i in range(50000) %}{{ 'äöü€€€' }}{% endfor %}"  # 300,000 characters
    r = make_templates(tmp_path, {"big/en.md": loop})
    error = render_error(r, request("big", channel="chat"))  # 750,000 bytes of UTF-8
    assert error.message == "templates/big/en.md: renders to 732 KB, more than 512 KB"


# --- golden files: every email of the example journeys -----------------------------------------


def _example_emails() -> list[tuple[str, str]]:
    report = validate((), root=ROOT)
    assert report.ok, [str(p) for p in report.problems]
    emails: dict[str, str] = {}
    for plan in report.plans.values():
        for node in plan.nodes.values():
            if isinstance(node, SendNode) and node.channel == "email":
                emails[node.template] = plan.category
    return sorted(emails.items())


EXAMPLE_EMAILS = _example_emails()
GOLDEN_CASES = [(t, c, loc) for t, c in EXAMPLE_EMAILS for loc in ("en", "de")]


def _check_golden(path: Path, actual: str) -> None:
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="")
        return
    assert path.exists(), f"{path.name} missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    expected = path.read_bytes().decode("utf-8")
    assert actual == expected, f"{path.name} changed: review, then rerun with UPDATE_GOLDEN=1"


def test_every_example_email_is_covered() -> None:
    assert len(EXAMPLE_EMAILS) == 16
    assert dict(EXAMPLE_EMAILS)["laptop-picks"] == "marketing"


@pytest.mark.parametrize(("template", "category", "locale"), GOLDEN_CASES)
def test_golden(renderer: Renderer, template: str, category: str, locale: str) -> None:
    unsubscribe = UNSUBSCRIBE_URL if category == "marketing" else None
    message = renderer.render(
        request(template, locale=locale, category=category), unsubscribe_url=unsubscribe
    )
    assert message.locale == locale
    assert message.subject and message.html and message.text
    _check_golden(GOLDEN / f"{template}.{locale}.subject.txt", message.subject + "\n")
    _check_golden(GOLDEN / f"{template}.{locale}.txt", message.text)
    _check_golden(GOLDEN / f"{template}.{locale}.html", message.html)


def test_no_stale_golden_files() -> None:
    if UPDATE_GOLDEN:
        for path in GOLDEN.glob("*"):
            if path.name.split(".")[0] not in dict(EXAMPLE_EMAILS):
                path.unlink()
    expected = {
        f"{t}.{loc}.{part}" for t, _, loc in GOLDEN_CASES for part in ("subject.txt", "txt", "html")
    }
    assert {p.name for p in GOLDEN.glob("*")} == expected


def test_the_project_still_validates() -> None:
    """The templates use the new filters; validation (which compiles them) knows them."""
    report = validate((), root=ROOT)
    assert report.ok, [str(p) for p in report.problems]
    assert report.summary().endswith("no problems")
