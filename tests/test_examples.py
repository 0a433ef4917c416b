"""The example journeys: valid, complete, drawable, and described by the JSON Schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from cli import app
from language.diagram import to_dot, to_mermaid
from language.schema import config_schema, journey_schema
from language.validator import validate
from language.yamlsource import load_yaml
from tests.conftest import EXAMPLE_JOURNEYS, ROOT
from workflows.plan import END, Plan, SendNode, SplitNode, WaitUntilNode, successors

EXAMPLE_IDS = {
    "newsletter-welcome",
    "laptop-recommendation",
    "post-purchase-accessories",
    "monday-newsletter",
    "vip-thank-you",
    "warranty-reminder",
    "birthday-greeting",
}


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    report = validate((), root=ROOT)
    assert report.problems == []
    return report.plans


def test_the_example_project_validates_cleanly(cli: CliRunner, in_project: Path) -> None:
    result = cli.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("✓ 7 journeys")
    assert "no problems" in result.stdout


def test_there_are_seven_examples(plans: dict[str, Plan]) -> None:
    assert set(plans) == EXAMPLE_IDS


def test_between_them_the_examples_use_every_step_type(plans: dict[str, Plan]) -> None:
    node_types = {node.type for plan in plans.values() for node in plan.nodes.values()}
    assert node_types == {
        "send",
        "wait",
        "wait_until",
        "wait_for",
        "branch",
        "split",
        "lookup",
        "set",
        "end",
    }
    authored = "".join(path.read_text() for path in EXAMPLE_JOURNEYS)
    assert re.search(r"^\s+- goto:", authored, re.MULTILINE), "goto compiles away; it is used"
    sends = [n for p in plans.values() for n in p.nodes.values() if isinstance(n, SendNode)]
    assert {n.channel for n in sends} == {"email", "webhook", "chat"}
    waits = [n for p in plans.values() for n in p.nodes.values() if isinstance(n, WaitUntilNode)]
    assert {n.date is None for n in waits} == {True, False}, "both wait_until modes"
    splits = [n for p in plans.values() for n in p.nodes.values() if isinstance(n, SplitNode)]
    assert any(path.holdout for split in splits for path in split.paths)


def test_every_edge_lands_on_a_node(plans: dict[str, Plan]) -> None:
    for plan in plans.values():
        assert plan.start in plan.nodes
        for node in plan.nodes.values():
            for _, target in successors(node):
                assert target in plan.nodes, (plan.journey_id, node.id, target)
        assert END in plan.nodes


def test_examples_round_trip_through_json(plans: dict[str, Plan]) -> None:
    for plan in plans.values():
        assert Plan.model_validate_json(plan.model_dump_json()) == plan


def test_templates_exist_in_english_and_german(plans: dict[str, Plan]) -> None:
    for plan in plans.values():
        for node in plan.nodes.values():
            if isinstance(node, SendNode) and node.channel == "email":
                folder = ROOT / "templates" / node.template
                assert (folder / "en.html").exists() and (folder / "de.html").exists(), folder


@pytest.mark.parametrize("journey_id", sorted(EXAMPLE_IDS))
def test_mermaid_draws_every_step_and_labelled_edges(
    plans: dict[str, Plan], journey_id: str
) -> None:
    plan = plans[journey_id]
    text = to_mermaid(plan)
    assert text.splitlines()[1] == "flowchart TD"
    for node_id in plan.nodes:
        assert re.search(rf"^\s+n_{re.escape(node_id.replace('-', '_'))}[\[\(\{{]", text, re.M), (
            node_id
        )
    for stage in {n.stage for n in plan.nodes.values() if n.stage}:
        assert f'subgraph stage_{stage}["{stage.title()}"]' in text
    assert text.count("subgraph") == text.count("\n  end") + text.count("\n    end") - _end_nodes(
        text
    )
    edge_count = sum(len(successors(n)) for n in plan.nodes.values()) + 1  # + the trigger
    assert len(re.findall(r"^\s+n_\w+ -\.?->", text, re.M)) == edge_count
    assert '"' not in re.sub(r'"[^"\n]*"', "", text), "quotes are balanced"


def _end_nodes(text: str) -> int:
    return len(re.findall(r"^\s+end\s*$", text, re.M)) - text.count("subgraph")


def test_edges_say_what_they_mean(plans: dict[str, Plan]) -> None:
    post = to_mermaid(plans["post-purchase-accessories"])
    assert '-->|"Order Delivered"| n_setup_guide' in post
    assert '-.->|"timeout 2w"| n_delivery_late' in post
    assert '|"if vars.score #gt;= 9"| n_referral' in post
    welcome = to_mermaid(plans["newsletter-welcome"])
    assert '|"control 10% (holdout)"|' in welcome
    assert "goal: Order Completed within 30d" in welcome


@pytest.mark.parametrize("journey_id", sorted(EXAMPLE_IDS))
def test_dot_is_balanced_and_complete(plans: dict[str, Plan], journey_id: str) -> None:
    plan = plans[journey_id]
    text = to_dot(plan)
    assert text.startswith(f'digraph "{journey_id}" {{') and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    for node_id in plan.nodes:
        assert f'"{node_id}" [shape=' in text


def test_graph_command_prints_mermaid_by_id_and_dot_by_path(
    cli: CliRunner, in_project: Path
) -> None:
    by_id = cli.invoke(app, ["graph", "newsletter-welcome"])
    assert by_id.exit_code == 0 and "flowchart TD" in by_id.stdout
    by_path = cli.invoke(app, ["graph", "journeys/laptop-recommendation.yaml", "--format", "dot"])
    assert by_path.exit_code == 0 and by_path.stdout.startswith('digraph "laptop-recommendation"')


# --- the JSON Schema --------------------------------------------------------------------------


def test_committed_schemas_are_current() -> None:
    committed = json.loads((ROOT / "schema" / "journey.schema.json").read_text())
    assert committed == journey_schema(), "run `make schema`"
    committed = json.loads((ROOT / "schema" / "touchpoint.schema.json").read_text())
    assert committed == config_schema(), "run `make schema`"


def test_the_schema_is_valid_and_the_examples_validate_against_it() -> None:
    schema = journey_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in EXAMPLE_JOURNEYS:
        data, _ = load_yaml(path.read_text(), path.name)
        errors = list(validator.iter_errors(data))
        assert errors == [], (path.name, [e.message for e in errors])
        assert path.read_text().startswith(
            "# yaml-language-server: $schema=../schema/journey.schema.json"
        )
    config, _ = load_yaml((ROOT / "touchpoint.yaml").read_text(), "touchpoint.yaml")
    jsonschema.Draft202012Validator(config_schema()).validate(config)


def test_the_schema_rejects_what_the_validator_rejects() -> None:
    validator = jsonschema.Draft202012Validator(journey_schema())
    good, _ = load_yaml(EXAMPLE_JOURNEYS[0].read_text(), "x")
    for mutate in (
        lambda d: d.update(category="promo"),
        lambda d: d["steps"].append({"wait": "three days"}),
        lambda d: d["steps"].append({"wiat": "3d"}),
        lambda d: d["steps"].append({"wait_for": "X"}),  # no timeout
        lambda d: d["trigger"].update(iff="x"),
    ):
        data = json.loads(json.dumps(good))
        mutate(data)
        assert not validator.is_valid(data)
