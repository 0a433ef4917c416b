"""Fixtures for fault tests: a folder of processes that are all gone when the test ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.stack import Processes, processes


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: a fault test on the real stack (crashes, restarts, outages)"
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as running:
        yield running
