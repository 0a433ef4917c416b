"""Load YAML while remembering where every key and value came from.

PyYAML composes the document into nodes that carry their marks; we convert the nodes to plain
Python values ourselves so that we can

* record the line and column of every value (and of every mapping key) by its path,
* reject duplicate keys, citing both lines,
* resolve plain scalars with YAML 1.2's core schema, so ``no`` stays a string, ``09:00`` is not
  the number 540 and ``on`` is not ``True`` (PyYAML resolves YAML 1.1),
* refuse recursive aliases and alias bombs instead of hanging.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from language.problems import Path, Problem, format_path

MAX_NODES = 50_000
_TOO_BIG = "a journey is a few hundred lines at most: split it, or remove the anchors and aliases"
_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_SPECIAL_FLOAT = {".inf": "inf", "+.inf": "inf", "-.inf": "-inf", ".nan": "nan"}

_SYNTAX_HINTS = {
    "mapping values are not allowed here": (
        'a value that contains ": " must be quoted, e.g. subject: "Hello: welcome"'
    ),
    "found character '\\t' that cannot start any token": "indent with spaces, not tabs",
    "found undefined alias": "define the anchor (&name) before using the alias (*name)",
    "could not find expected ':'": "each line inside a mapping needs `key: value`",
    "expected <block end>, but found": "check the indentation of this line against the lines above",
    "but got '{'": 'quote text that contains { or }, e.g. "${CRM_SECRET}" or "{{ profile.id }}"',
}


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class SourceMap:
    """Where each path of a loaded document stands in its file."""

    file: str
    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)
    styles: dict[Path, str | None] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # found while loading, not fatal

    def locate(self, path: Path, *, key: bool = False) -> Position:
        """The position of ``path``, or of its nearest recorded ancestor."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if key and prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return Position(1, 1)

    def problem(
        self, path: Path, message: str, hint: str | None = None, *, key: bool = False
    ) -> Problem:
        pos = self.locate(path, key=key)
        return Problem(self.file, pos.line, pos.column, format_path(path), message, hint)

    def within(self, prefix: Path) -> Locator:
        """The part of the document at ``prefix``, validated on its own but located and named
        from the file's root (an events file's item 3 reports ``[3].event``)."""
        return _Within(self, prefix)

    def expression_column(self, path: Path, offset: int) -> Position:
        """Position of character ``offset`` inside the single-line scalar at ``path``."""
        pos = self.locate(path)
        style = self.styles.get(path)
        if style in (None, "'", '"'):
            return Position(pos.line, pos.column + offset + (1 if style else 0))
        return pos


class Locator(Protocol):
    """Turns a path in a document into a positioned problem."""

    def problem(
        self, path: Path, message: str, hint: str | None = None, *, key: bool = False
    ) -> Problem: ...


@dataclass(frozen=True)
class _Within:
    source: SourceMap
    prefix: Path

    def problem(
        self, path: Path, message: str, hint: str | None = None, *, key: bool = False
    ) -> Problem:
        return self.source.problem((*self.prefix, *path), message, hint, key=key)


class YamlError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.format())
        self.problem = problem


def load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document.

    Raises :class:`YamlError` when the text cannot be read at all; problems that still leave a
    usable document (duplicate keys) are collected in ``SourceMap.problems``.
    """
    source = SourceMap(file)
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as error:
        raise YamlError(_syntax_problem(error, file)) from None
    except yaml.YAMLError as error:  # unmarked: e.g. a stream that is not text
        raise YamlError(
            Problem(file, 1, 1, "", f"YAML syntax: {error}", "save the file as UTF-8 text")
        ) from None
    except RecursionError:
        raise YamlError(
            Problem(file, 1, 1, "", "YAML nested too deeply to read", _TOO_BIG)
        ) from None
    if len(documents) > 1:
        mark = documents[1].start_mark
        raise YamlError(
            Problem(
                file,
                mark.line + 1,
                mark.column + 1,
                "",
                "a file holds one journey, but this one has several YAML documents",
                'remove the "---" line or move the second document into its own file',
            )
        )
    if not documents or documents[0] is None:
        return None, source
    converter = _Converter(source)
    try:
        return converter.convert(documents[0], ()), source
    except RecursionError:
        raise YamlError(
            Problem(file, 1, 1, "", "YAML nested too deeply to read", _TOO_BIG)
        ) from None


_OPENERS = {
    "while parsing a flow sequence": (
        'this "[" is never closed',
        'close the list with "]", or put text that starts with "[" in quotes',
    ),
    "while parsing a flow mapping": (
        'this "{" is never closed',
        'close it with "}", or quote text that contains { or }, e.g. "{{ profile.id }}"',
    ),
    "while scanning a quoted scalar": (
        "this quote is never closed",
        'end the text with the same quote it starts with; inside "…" write a quote as \\", '
        "inside '…' as ''",
    ),
    "while scanning a simple key": (
        'this line has no ":" after its key',
        "each line inside a mapping needs `key: value`",
    ),
}


def _syntax_problem(error: yaml.MarkedYAMLError, file: str) -> Problem:
    """Where the parser gave up, or — for a bracket or quote that is never closed — where it
    was opened (the context mark), since the parser may give up many lines further down."""
    problem = error.problem or "could not read this YAML"
    opener = _OPENERS.get(error.context or "")
    opened = error.context_mark
    if opener and opened is not None:
        message, opener_hint = opener
        problem = problem.replace("found unexpected end of stream", "the file ends")
        problem = problem.replace("'<stream end>'", "the end of the file")
        gave_up = error.problem_mark
        if gave_up is not None and gave_up.line != opened.line:
            message += f" (reading stopped at line {gave_up.line + 1}: {problem})"
        else:
            message += f" ({problem})"
        return Problem(
            file, opened.line + 1, opened.column + 1, "", f"YAML syntax: {message}", opener_hint
        )
    mark = error.problem_mark or error.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    if error.context and error.context not in problem:
        problem = f"{problem} ({error.context})"
    hint = next((h for needle, h in _SYNTAX_HINTS.items() if needle in problem), None)
    return Problem(
        file, line, column, "", f"YAML syntax: {problem}", hint or "check the YAML on this line"
    )


class _Converter:
    def __init__(self, source: SourceMap) -> None:
        self.source = source
        self.count = 0
        self.active: set[int] = set()

    def convert(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlError(
                self._problem(node, path, f"document too large (over {MAX_NODES} values)", _TOO_BIG)
            )
        self.source.values[path] = _position(node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            self.source.styles[path] = node.style
            return resolve_scalar(node.value) if node.style is None else node.value
        if id(node) in self.active:
            raise YamlError(
                self._problem(
                    node,
                    path,
                    "a YAML alias refers to itself",
                    "an alias (*name) cannot stand inside its own anchor (&name)",
                )
            )
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
            return self._mapping(node, path)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.Node, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError(
                    self._problem(
                        key_node, path, "a key must be plain text", "e.g. template: welcome"
                    )
                )
            key = key_node.value
            key_position = _position(key_node.start_mark)
            if key in result:
                first = self.source.keys[(*path, key)]
                self.source.problems.append(
                    Problem(
                        self.source.file,
                        key_position.line,
                        key_position.column,
                        format_path((*path, key)),
                        f'duplicate key "{key}", first on line {first.line}',
                        "keep one of them; YAML would silently use the last",
                    )
                )
                continue
            self.source.keys[(*path, key)] = key_position
            result[key] = self.convert(value_node, (*path, key))
        return result

    def _problem(
        self, node: yaml.Node, path: Path, message: str, hint: str | None = None
    ) -> Problem:
        pos = _position(node.start_mark)
        return Problem(self.source.file, pos.line, pos.column, format_path(path), message, hint)


def _position(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def resolve_scalar(text: str) -> Any:
    """Resolve a plain scalar with YAML 1.2's core schema."""
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT.fullmatch(text):
        return int(text, 0) if text[:2] in ("0o", "0x") else int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    lowered = text.lower()
    if lowered in _SPECIAL_FLOAT:
        return float(_SPECIAL_FLOAT[lowered])
    return text
