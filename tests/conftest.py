"""Shared test helpers: paths and an in-process CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXAMPLE_JOURNEYS = sorted((ROOT / "journeys").glob("*.yaml"))


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture
def in_project(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run with the repository (the example project) as working directory."""
    monkeypatch.chdir(ROOT)
    return ROOT
