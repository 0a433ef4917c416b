"""The validator never crashes: random YAML and mutated examples yield problems or a plan.

A traceback here is a bug a marketer would hit with a typo, so hypothesis hunts for one.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from language.compiler import ProjectContext
from language.problems import Problem
from language.validator import compile_text, validate
from tests.conftest import EXAMPLE_JOURNEYS, ROOT

CONTEXT = ProjectContext(config=validate((), root=ROOT).config)
EXAMPLE_TEXTS = [path.read_text() for path in EXAMPLE_JOURNEYS]
EXAMPLES = [yaml.safe_load(text) for text in EXAMPLE_TEXTS]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            "3d",
            "0d",
            "end",
            "email",
            "chat",
            "webhook",
            "09:00",
            "{{ x }}",
            "profile.traits.x",
            "event.properties.order_id",
            "vars.x >> 1",
            "welcome",
            "crm",
            "support-team",
            "shop-api",
            "once",
            "-1d",
            "marketing",
            "mon",
        ]
    ),
)
keys = st.sampled_from(
    [
        "id",
        "name",
        "category",
        "trigger",
        "event",
        "if",
        "key",
        "steps",
        "send",
        "template",
        "wait",
        "wait_for",
        "timeout",
        "on_timeout",
        "branch",
        "goto",
        "split",
        "percent",
        "lookup",
        "path",
        "save_as",
        "set",
        "end",
        "entry",
        "reentry",
        "after",
        "goal",
        "within",
        "exit_when",
        "wait_until",
        "time",
        "days",
        "date",
        "offset",
        "to",
        "else",
        "holdout",
        "stage",
    ]
) | st.text(max_size=8)
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)


def assert_answers(text: str) -> None:
    plan, problems, _ = compile_text(text, "fuzz.yaml", CONTEXT)
    assert (plan is None) == bool(problems)
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.line >= 1 and problem.column >= 1
        assert problem.format().startswith("fuzz.yaml:")


@FUZZ
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    assert_answers(text)


@FUZZ
@given(documents)
def test_any_yaml_document(document: Any) -> None:
    assert_answers(yaml.safe_dump(document, allow_unicode=True))


def _mutate(data: Any, choices: st.DataObject) -> Any:
    """Replace, delete or duplicate one random node somewhere inside ``data``."""
    if isinstance(data, dict) and data and choices.draw(st.booleans()):
        key = choices.draw(st.sampled_from(sorted(data, key=str)))
        action = choices.draw(st.sampled_from(["delete", "replace", "descend", "rename"]))
        if action == "delete":
            del data[key]
        elif action == "replace":
            data[key] = choices.draw(documents)
        elif action == "rename":
            data[choices.draw(keys)] = data.pop(key)
        else:
            data[key] = _mutate(data[key], choices)
        return data
    if isinstance(data, list) and data:
        index = choices.draw(st.integers(0, len(data) - 1))
        action = choices.draw(st.sampled_from(["delete", "replace", "descend", "duplicate"]))
        if action == "delete":
            del data[index]
        elif action == "replace":
            data[index] = choices.draw(documents)
        elif action == "duplicate":
            data.insert(index, copy.deepcopy(data[index]))
        else:
            data[index] = _mutate(data[index], choices)
        return data
    return choices.draw(documents)


@FUZZ
@given(st.sampled_from(EXAMPLES), st.data())
def test_mutated_examples(example: dict[str, Any], choices: st.DataObject) -> None:
    data = copy.deepcopy(example)
    for _ in range(choices.draw(st.integers(1, 4))):
        data = _mutate(data, choices)
    assert_answers(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


@FUZZ
@given(st.sampled_from(EXAMPLE_TEXTS), st.data())
def test_examples_with_characters_cut_or_inserted(text: str, choices: st.DataObject) -> None:
    position = choices.draw(st.integers(0, len(text)))
    cut = choices.draw(st.integers(0, 20))
    insert = choices.draw(
        st.sampled_from(
            [
                "",
                ":",
                "- ",
                "  ",
                "\t",
                "{",
                "}}",
                "'",
                "&a",
                "*a",
                "\n",
                "---\n",
                "{{",
                "%",
                "|",
                ">",
            ]
        )
    )
    assert_answers(text[:position] + insert + text[position + cut :])


def test_the_unmutated_examples_compile() -> None:
    for text in EXAMPLE_TEXTS:
        plan, problems, _ = compile_text(text, "example.yaml", CONTEXT)
        assert problems == [] and plan is not None
