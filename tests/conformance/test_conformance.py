"""Conformance: the fast simulator tells the same story as the exact one (the real workflow on
Temporal's time-skipping server) — for every case of the example journeys' test files, and for
generated journeys and event streams (``CONFORMANCE_EXAMPLES`` of them, default 300).

Skipped until ``simulation/fast.py`` exists. ``pytest -m conformance`` runs this suite alone.
A failure prints the differences and, for a generated example, the journeys and events to
reproduce it with ``touchpoint simulate``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

import pytest
from hypothesis import HealthCheck, given, settings

from config.project import ProjectConfig
from language.compiler import ProjectContext
from simulation.commands import quiet_sdk_logs
from simulation.journey_tests import PreparedCase, find_test_files, load_test_file
from simulation.setup import load_project
from simulation.simulator import Scenario, SimulationResult, Simulator
from tests.conformance.compare import timeline_differences
from tests.conformance.strategies import (
    GeneratedCase,
    generated_cases,
    project_context,
    write_project,
)
from tests.conftest import ROOT

pytestmark = pytest.mark.conformance

EXAMPLES = int(os.environ.get("CONFORMANCE_EXAMPLES", "300"))


class Simulates(Protocol):
    def run(self, scenario: Scenario) -> Awaitable[SimulationResult]: ...


class SimulatorType(Protocol):
    def __call__(self, root: Path, config: ProjectConfig) -> Simulates: ...


def fast_simulator() -> SimulatorType:
    """The simulator under test; the suite skips until it exists."""
    fast = pytest.importorskip("simulation.fast")
    simulator: SimulatorType = fast.FastSimulator
    return simulator


def differences(
    scenario: Scenario, exact: Simulates, other: Simulates
) -> tuple[list[str], SimulationResult]:
    """The differences between the two simulators' results (and the exact one's result)."""

    async def both() -> tuple[SimulationResult, SimulationResult]:
        return await exact.run(scenario), await other.run(scenario)

    quiet_sdk_logs()
    expected, actual = asyncio.run(both())
    return timeline_differences(expected, actual), expected


TRIES = 3
"""How often a scenario whose timelines differ is run again before the difference counts."""
left_to_chance: list[str] = []  # scenarios a rerun of the exact simulator agreed on


def lasting_differences(scenario: Scenario, exact: Simulates, fast: Simulates) -> list[str]:
    """The differences that hold in :data:`TRIES` runs. Where one run agrees, the time-skipping
    server left the scenario to chance (real time decided: how fast it worked through a run
    that ends at once, docs/simulate.md), not the fast simulator: noted in
    :data:`left_to_chance`, which the suite keeps small."""
    found, _ = differences(scenario, exact, fast)
    for _ in range(TRIES - 1):
        if not found:
            return []
        again, _ = differences(scenario, exact, fast)
        if not again:
            left_to_chance.append("\n".join(found))
            return []
    return found


def example_cases() -> list[Any]:
    """Every case of the example journeys' test files, as a pytest parameter."""
    project, _ = load_project(ROOT)
    assert project is not None, "touchpoint.yaml of the examples has problems"
    return [
        pytest.param(case, id=f"{Path(case.file).name}: {case.name}")
        for path in find_test_files([], project)
        for case in load_test_file(path, project)
    ]


@pytest.mark.parametrize("case", example_cases())
def test_the_examples_test_cases_conform(case: PreparedCase) -> None:
    simulator = fast_simulator()
    project, _ = load_project(ROOT)
    assert project is not None
    found = lasting_differences(
        case.scenario,
        Simulator(project.root, project.config),
        simulator(project.root, project.config),
    )
    assert found == [], "\n".join([f"{case.file}: {case.name} (a: exact, b: fast)", *found])


@pytest.fixture(scope="module")
def generated_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ProjectContext]:
    root = write_project(tmp_path_factory.mktemp("conformance"))
    return root, project_context(root)


@pytest.mark.timeout(1800)  # about 2 s an example; more on a busy machine
def test_generated_journeys_conform(generated_project: tuple[Path, ProjectContext]) -> None:
    simulator = fast_simulator()
    root, context = generated_project
    exact = Simulator(root, context.config)
    fast = simulator(root, context.config)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(generated_cases(context))
    def check(case: GeneratedCase) -> None:
        found = lasting_differences(case.scenario, exact, fast)
        assert found == [], "\n".join(
            ["a: exact, b: fast", *found, "", "to reproduce:", case.describe()]
        )

    left_to_chance.clear()
    check()
    assert len(left_to_chance) <= max(3, EXAMPLES // 50), "\n\n".join(left_to_chance)
