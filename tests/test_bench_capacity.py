"""The capacity benchmark's arithmetic (pure units): Temporal Cloud actions counted from recorded
histories, the action price tiers, and the capacity model's linearity."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from temporalio.client import WorkflowHistory

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))  # the benchmarks import each other by module name
import bench_capacity

HISTORIES = ROOT / "tests" / "histories"


def recorded(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(name, json.loads((HISTORIES / f"{name}.json").read_text()))


def test_a_signal_with_start_is_one_action_and_change_version_upserts_are_free() -> None:
    """The whole series: 4 of its 8 upserts set only TemporalChangeVersion; its markers fall in
    3 workflow tasks; the trigger signal came with the start."""
    found = bench_capacity.actions(recorded("newsletter-welcome-whole-series"))
    assert found == {
        "workflow started": 1,
        "activity": 3,
        "timer": 3,
        "search attributes": 4,
        "marker": 3,
    }


def test_signals_after_the_start_count_each() -> None:
    found = bench_capacity.actions(recorded("post-purchase-accessories-detractor-six-messages"))
    assert found == {
        "workflow started": 1,
        "signal": 2,  # delivered, survey answered (the trigger came with the start)
        "activity": 7,
        "timer": 4,
        "search attributes": 5,
        "marker": 4,
    }


def test_actions_are_priced_by_tier_as_the_pricing_page_shows() -> None:
    assert bench_capacity.actions_usd(11.25e6) == pytest.approx(525)  # the page's example
    assert bench_capacity.actions_usd(1e6) == pytest.approx(50)


def journey(name: str, actions: int, steps: int, cpu: float) -> dict[str, Any]:
    run = {"actions": {"activity": actions}, "steps": steps, "api_calls": 2, "sends": 1}
    run |= {"events": 10, "history_bytes": 1000}
    return {
        "journey": name,
        "days": 10.0,
        "runs": [run, run],
        "cpu_ms": {"worker": cpu, "server": 2 * cpu, "api": cpu / 2},
        "store_rows": {"deliveries": 2},
        "store_payload": {"deliveries": 400},
        "store_pages": {"deliveries": 8192},
    }


def test_the_capacity_model_is_linear_and_names_the_lowest_limit_first() -> None:
    data = {"journeys": [journey("a", 10, 5, 100.0), journey("b", 20, 3, 60.0)]}
    assume = bench_capacity.Assumptions()
    one = bench_capacity.capacity(data, 1_000_000, assume)
    ten = bench_capacity.capacity(data, 10_000_000, assume)
    assert one.actions == 1_000_000 * (10 + 20)
    assert ten.actions == 10 * one.actions and ten.store_gb_month == 10 * one.store_gb_month
    assert ten.retained_gb == pytest.approx(10 * one.retained_gb)
    assert ten.worker_processes >= one.worker_processes
    limits = bench_capacity.limits(data, assume)
    assert [at for _, at in limits] == sorted(at for _, at in limits)
    assert limits[0][0].startswith("the dev server")  # it spends the most CPU per customer here


def test_a_file_that_is_not_per_run_figures_is_a_clear_error(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"journeys": [{"journey": "x"}]}')
    monkeypatch.setattr(sys, "argv", ["bench_capacity.py", "--table", str(wrong)])
    with pytest.raises(SystemExit, match=r"^not per-run figures of bench_capacity\.py"):
        bench_capacity.main()
