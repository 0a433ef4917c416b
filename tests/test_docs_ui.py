"""The API's ``/docs`` works with no internet: the page names no URL outside the API, the
vendored Swagger UI files are served with their content types, are the files VENDOR.md lists,
and are installed with the package."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from pathlib import Path

import httpx
import pytest

from ingestion.docs_ui import STATIC, SWAGGER_UI

VENDOR = STATIC / "vendor"
FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


async def test_docs_names_no_url_outside_the_api(
    api: tuple[httpx.AsyncClient, object, str],
) -> None:
    client, _, _ = api
    answer = await client.get("/docs")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert re.findall(r"(?i)\b(?:https?:)?//[a-z0-9.-]+", page) == [], "no absolute or CDN URL"
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(referenced) == sorted(f"/static/vendor/{SWAGGER_UI}/{name}" for name in FILES)
    assert "url: '/openapi.json'" in page
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/redoc")).status_code == 404, "ReDoc would load from a CDN"


@pytest.mark.parametrize(("name", "media_type"), FILES.items())
async def test_the_vendored_files_are_served_with_their_content_type(
    api: tuple[httpx.AsyncClient, object, str], name: str, media_type: str
) -> None:
    client, _, _ = api
    answer = await client.get(f"/static/vendor/{SWAGGER_UI}/{name}")
    assert answer.status_code == 200
    assert answer.headers["content-type"].split(";")[0] == media_type
    assert answer.content == (VENDOR / SWAGGER_UI / name).read_bytes()


def test_the_vendored_files_are_those_vendor_md_lists_with_their_licence() -> None:
    notes = (VENDOR / "VENDOR.md").read_text()
    folder = VENDOR / SWAGGER_UI
    for name in FILES:
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert f"| {name} | `{digest}` |" in notes, f"{name}: checksum not in VENDOR.md"
    assert "Apache License" in (folder / "LICENSE").read_text()
    assert (folder / "NOTICE").exists() and (folder / "swagger-ui-bundle.js.LICENSE.txt").exists()
    version = SWAGGER_UI.rsplit("-", 1)[1]
    assert f"| swagger-ui-dist | {version} |" in notes


def test_the_package_data_takes_every_vendored_file() -> None:
    """An installed ``touchpoint api`` serves them: pyproject's package data matches each
    file (building a wheel here would download setuptools; checked by hand, see VENDOR.md)."""
    root = Path(__file__).resolve().parent.parent
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["ingestion"]
    package = root / "ingestion"
    files = [f.relative_to(package).as_posix() for f in VENDOR.rglob("*") if f.is_file()]
    assert len(files) >= 6
    for name in files:
        assert any(fnmatch.fnmatch(name, p) for p in patterns), f"{name} would not be installed"
