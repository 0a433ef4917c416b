"""RFC 8058 one-click unsubscribe on the real app: exactly ``List-Unsubscribe=One-Click`` as a
form field unsubscribes; every near miss and hostile body is refused and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ingestion import api as ingestion_api
from ingestion.api import create_app
from ingestion.one_click import MAX_BODY_BYTES
from ingestion.service import Ingestion
from ingestion.unsubscribe import make_token
from store.consent import ConsentStore
from store.database import connect
from store.keys import WriteKeys
from store.processed import ProcessedMessages
from store.profiles import ProfileStore

SECRET = b"unsubscribe-secret-for-tests"
BOUNDARY = "----touchpoint-boundary"
EXPECTED = "expected the body List-Unsubscribe=One-Click"


class UnsubscribeApi:
    def __init__(self, tmp_path: Path) -> None:
        engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
        self.consent = ConsentStore(engine)

        async def nowhere(*_: object) -> None:
            raise AssertionError("no event is routed here")

        async def unsubscribe(customer_id: str, reason: str) -> None:
            self.consent.withdraw(customer_id, reason)

        app = create_app(
            ingestion_api.Api(
                Ingestion(ProfileStore(engine), ProcessedMessages(engine), nowhere),
                WriteKeys(engine),
                unsubscribe=unsubscribe,
                unsubscribe_secret=SECRET,
            )
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        )
        self.path = f"/unsubscribe/{make_token(SECRET, 'max-1')}"

    async def post(self, body: bytes, content_type: str | None) -> httpx.Response:
        headers = {"content-type": content_type} if content_type else {}
        return await self.client.post(self.path, content=body, headers=headers)

    def unsubscribed(self) -> bool:
        return self.consent.blocked("max-1") is not None


@pytest.fixture
def api(tmp_path: Path) -> UnsubscribeApi:
    return UnsubscribeApi(tmp_path)


def multipart(*parts: tuple[str, str]) -> tuple[bytes, str]:
    """A multipart/form-data body from (Content-Disposition parameters, value) pairs."""
    body = "".join(
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n{value}\r\n"
        for disposition, value in parts
    )
    return f"{body}--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"List-Unsubscribe=One-Click", FORM, id="gmail"),
        pytest.param(b"List-Unsubscribe=One%2DClick", FORM, id="percent-encoded"),
        pytest.param(b"List-Unsubscribe=One-Click", f"{FORM}; charset=utf-8", id="charset"),
        pytest.param(*multipart(('name="List-Unsubscribe"', "One-Click")), id="multipart"),
        pytest.param(*multipart(("name=List-Unsubscribe", "One-Click")), id="unquoted-name"),
    ],
)
async def test_the_one_click_form_unsubscribes(
    api: UnsubscribeApi, body: bytes, content_type: str
) -> None:
    response = await api.post(body, content_type)
    assert response.status_code == 200, response.text
    assert "You are unsubscribed." in response.text
    assert api.consent.blocked("max-1") == "unsubscribed (one-click)"


async def test_the_confirmation_pages_own_form_unsubscribes(api: UnsubscribeApi) -> None:
    """What a person's browser sends from the page behind the link (a hidden field)."""
    page = await api.client.get(api.path)
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page.text
    clicked = await api.client.post(api.path, data={"List-Unsubscribe": "One-Click"})
    assert clicked.status_code == 200 and api.unsubscribed()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        pytest.param(
            b"List-Unsubscribe=One-Clickety-Click", FORM, 400, EXPECTED, id="one-clickety"
        ),
        pytest.param(
            *multipart(('name="List-Unsubscribe"', "One-Clickety-Click")),
            400,
            EXPECTED,
            id="multipart-one-clickety",
        ),
        pytest.param(b"List-Unsubscribe=+One-Click", FORM, 400, EXPECTED, id="leading-space"),
        pytest.param(
            *multipart(('name="List-Unsubscribe"', " One-Click")),
            400,
            EXPECTED,
            id="multipart-leading-space",
        ),
        pytest.param(b"List-Unsubscribe=One-Click%0A", FORM, 400, EXPECTED, id="newline"),
        pytest.param(b"List-Unsubscribe=one-click", FORM, 400, EXPECTED, id="lower-case"),
        pytest.param(b"list-unsubscribe=One-Click", FORM, 400, EXPECTED, id="field-name-case"),
        pytest.param(
            *multipart(('filename="click.txt"; name="List-Unsubscribe"', "One-Click")),
            400,
            f"{EXPECTED} as a form field, not a file",
            id="file-part",
        ),
        pytest.param(
            *multipart(
                ('name="List-Unsubscribe"', "One-Click"), ('name="x"; filename="a.bin"', "AAAA")
            ),
            400,
            f"{EXPECTED} as a form field, not a file",
            id="file-part-beside",
        ),
        pytest.param(
            b"List-Unsubscribe=No&List-Unsubscribe=One-Click", FORM, 400, EXPECTED, id="two"
        ),
        pytest.param(
            b"List-Unsubscribe=One-Click&List-Unsubscribe=One-Click",
            FORM,
            400,
            EXPECTED,
            id="twice",
        ),
        pytest.param(
            *multipart(
                ('name="List-Unsubscribe"', "Nope"), ('name="List-Unsubscribe"', "One-Click")
            ),
            400,
            EXPECTED,
            id="multipart-two",
        ),
        pytest.param(b"", FORM, 400, EXPECTED, id="empty"),
        pytest.param(b"Unsubscribe=One-Click", FORM, 400, EXPECTED, id="missing-field"),
        pytest.param(*multipart(('name="other"', "One-Click")), 400, EXPECTED, id="mp-missing"),
        pytest.param(
            b"--x\r\nContent-Disposition: form-data; name=List-Unsubscribe\r\n\r\nOne-Click",
            "multipart/form-data",
            400,
            f"{EXPECTED} (the form cannot be read: Missing boundary in multipart.)",
            id="no-boundary",
        ),
        pytest.param(
            b"\x00\xff garbage",
            f"multipart/form-data; boundary={BOUNDARY}",
            400,
            f"{EXPECTED} (the form cannot be read: Invalid multipart data.)",
            id="garbage",
        ),
        *(
            pytest.param(
                b"List-Unsubscribe=One-Click",
                content_type,
                415,
                f"{EXPECTED}, as application/x-www-form-urlencoded or multipart/form-data",
                id=f"type-{content_type}",
            )
            for content_type in ("text/plain", "application/json", None)
        ),
        pytest.param(
            b'{"List-Unsubscribe": "One-Click"}',
            "application/json",
            415,
            f"{EXPECTED}, as application/x-www-form-urlencoded or multipart/form-data",
            id="json",
        ),
    ],
)
async def test_anything_else_is_refused_and_changes_nothing(
    api: UnsubscribeApi, body: bytes, content_type: str | None, status: int, message: str
) -> None:
    response = await api.post(body, content_type)
    assert (response.status_code, response.json()["message"]) == (status, message)
    assert not api.unsubscribed()


async def test_a_huge_body_is_refused_without_reading_it_all(api: UnsubscribeApi) -> None:
    """Streamed without a length, 64 MB: the server stops reading just past its limit."""
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b"List-Unsubscribe=One-Click&padding="
        for _ in range(1024):
            sent += 64 * 1024
            yield b"x" * (64 * 1024)

    response = await api.client.post(api.path, content=endless(), headers={"content-type": FORM})
    assert response.status_code == 413
    assert response.json()["message"] == f"the body is larger than 8 KB; {EXPECTED}"
    assert sent <= 2 * 64 * 1024, f"read {sent} bytes"
    assert not api.unsubscribed()


async def test_a_declared_length_over_the_limit_is_refused_at_once(api: UnsubscribeApi) -> None:
    body = b"List-Unsubscribe=One-Click&padding=" + b"x" * MAX_BODY_BYTES
    response = await api.post(body, FORM)
    assert response.status_code == 413 and not api.unsubscribed()


async def test_a_body_just_under_the_limit_with_other_fields_is_fine(api: UnsubscribeApi) -> None:
    """Fields besides List-Unsubscribe are ignored (a receiver may add its own)."""
    padding = b"x" * (MAX_BODY_BYTES - 100)
    response = await api.post(b"List-Unsubscribe=One-Click&note=" + padding, FORM)
    assert response.status_code == 200 and api.unsubscribed()


async def test_a_forged_token_with_the_right_body_is_refused(api: UnsubscribeApi) -> None:
    response = await api.client.post(
        "/unsubscribe/forged.token", data={"List-Unsubscribe": "One-Click"}
    )
    assert (response.status_code, response.json()["message"]) == (
        400,
        "this unsubscribe link is not valid",
    )
