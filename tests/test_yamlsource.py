"""The position-keeping YAML loader."""

from __future__ import annotations

import pytest

from language.yamlsource import MAX_NODES, Position, YamlError, load_yaml


def test_values_and_keys_keep_their_line_and_column() -> None:
    data, source = load_yaml("id: x\nsteps:\n  - wait: 3d\n  - {send: email}\n", "j.yaml")
    assert data == {"id": "x", "steps": [{"wait": "3d"}, {"send": "email"}]}
    assert source.values[("steps", 0, "wait")] == Position(3, 11)
    assert source.keys[("steps", 0, "wait")] == Position(3, 5)
    assert source.values[("steps", 1, "send")] == Position(4, 12)
    assert source.locate(("steps", 1, "missing")) == Position(4, 5)


def test_plain_scalars_follow_yaml_1_2_not_1_1() -> None:
    data, _ = load_yaml("a: 09:00\nb: no\nc: on\nd: yes\ne: 1.5\nf: 0x1F\ng: ~\nh: True\n", "f")
    assert data == {
        "a": "09:00",
        "b": "no",
        "c": "on",
        "d": "yes",
        "e": 1.5,
        "f": 31,
        "g": None,
        "h": True,
    }


def test_quoted_scalars_stay_text() -> None:
    data, source = load_yaml("a: '42'\nb: \"true\"\n", "f")
    assert data == {"a": "42", "b": "true"}
    assert source.styles[("a",)] == "'"


def test_duplicate_keys_are_reported_with_both_lines_and_the_first_is_kept() -> None:
    data, source = load_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert data == {"a": 1, "b": 2}
    [problem] = source.problems
    assert problem.format() == (
        'f.yaml:3:1: a: duplicate key "a", first on line 1 '
        "(hint: keep one of them; YAML would silently use the last)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: b: c\n", "1:5: YAML syntax: mapping values are not allowed here"),
        ("a: [1, 2\n", "YAML syntax:"),
        ("&a [*a]\n", "a YAML alias refers to itself"),
        ("a: 1\n---\nb: 2\n", "several YAML documents"),
        ("\ta: 1\n", "indent with spaces, not tabs"),
        ("[" * 5000, "YAML"),
    ],
)
def test_unreadable_yaml_raises_a_positioned_problem(text: str, message: str) -> None:
    with pytest.raises(YamlError) as caught:
        load_yaml(text, "f.yaml")
    assert message in caught.value.problem.format()
    assert caught.value.problem.file == "f.yaml"


def test_an_alias_bomb_is_refused_not_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
        for i in range(1, 9)
    ]
    with pytest.raises(YamlError, match=f"over {MAX_NODES} values"):
        load_yaml("\n".join(lines), "bomb.yaml")


def test_empty_document_is_none() -> None:
    assert load_yaml("# only a comment\n", "f")[0] is None


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("id: a\ndays: [mon, tue\nname: x\nother: y\n", "f.yaml:2:7:", 'this "[" is never closed'),
        ("id: a\nt: {event: x\nname: y\n", "f.yaml:2:4:", 'this "{" is never closed'),
        ('id: a\nname: "Hello\nfoo: bar\n' + "x: y\n" * 20, "f.yaml:2:7:", "this quote is never"),
        ("id: a\nname: 'Hello\nfoo: bar\n", "f.yaml:2:7:", "this quote is never closed"),
    ],
)
def test_an_unclosed_bracket_or_quote_is_reported_where_it_opens(
    text: str, where: str, message: str
) -> None:
    """The parser gives up lines later (at the end of the file for a quote); the problem is
    reported where the bracket or quote opens, and says where reading stopped."""
    with pytest.raises(YamlError) as caught:
        load_yaml(text, "f.yaml")
    shown = caught.value.problem.format()
    assert shown.startswith(f"{where} YAML syntax: {message}")
    assert "reading stopped at line" in shown and "(hint: " in shown
