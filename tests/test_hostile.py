"""Hostile templates and expressions (``tests/hostile/*.yaml``): resource exhaustion and sandbox
escapes, each run in a process of its own with a memory limit and a timeout
(:mod:`tests.hostile.run`). Each must fail cleanly — the error it names, quickly — and never
crash, hang or exhaust the process."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.hostile.run import load

TEMPLATES = load("templates")
EXPRESSIONS = load("expressions")
TEMPLATE_SECONDS = 1.5  # of CPU: the one-second budget of a message, plus one step past it
EXPRESSION_SECONDS = 1.0  # of CPU: below the two seconds after which Temporal suspects a deadlock
WALL_SECONDS = 10.0  # however busy the machine running the tests


def run_cases(kind: str) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.hostile.run", kind],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {result["name"]: result for result in results}


@pytest.fixture(scope="module")
def template_results() -> dict[str, dict[str, Any]]:
    return run_cases("templates")


@pytest.fixture(scope="module")
def expression_results() -> dict[str, dict[str, Any]]:
    return run_cases("expressions")


def test_the_cases_have_unique_names() -> None:
    for cases in (TEMPLATES, EXPRESSIONS):
        names = [case["name"] for case in cases]
        assert len(names) == len(set(names))


@pytest.mark.parametrize("case", TEMPLATES, ids=[c["name"] for c in TEMPLATES])
def test_a_hostile_template_fails_cleanly(
    template_results: dict[str, dict[str, Any]], case: dict[str, Any]
) -> None:
    result = template_results[case["name"]]
    assert result["outcome"] == "error", result
    assert result["type"] == "RenderError" and result["non_retryable"], result
    display = f"templates/{case['name']}/en.{case.get('file', 'html')}"
    assert result["message"].startswith(display), result["message"]
    assert case["error"] in result["message"]
    assert result["cpu"] < TEMPLATE_SECONDS and result["seconds"] < WALL_SECONDS, result


@pytest.mark.parametrize("case", EXPRESSIONS, ids=[c["name"] for c in EXPRESSIONS])
def test_a_hostile_expression_fails_cleanly(
    expression_results: dict[str, dict[str, Any]], case: dict[str, Any]
) -> None:
    result = expression_results[case["name"]]
    assert result["outcome"] == "error", result
    assert result["type"] == "ExpressionFailed", result
    source = case.get("expression", case.get("text"))
    assert result["message"].startswith(repr(source)), result["message"]
    assert case["error"] in result["message"]
    assert result["cpu"] < EXPRESSION_SECONDS and result["seconds"] < WALL_SECONDS, result
