"""``touchpoint validate``: every problem in a project's journeys, templates and config at once.

The validator never raises on bad input: whatever the files hold, the answer is a
:class:`Report` with problems (sorted) and the plans of the journeys that compiled.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from config.errors import UserError
from config.project import (
    ENV_REFERENCE,
    ProjectConfig,
    env_name_for,
    secret_fields,
)
from language import authoring as a
from language.compiler import ProjectContext, compile_journey
from language.policies import check_project_policies
from language.problems import Path as KeyPath
from language.problems import Problem, did_you_mean, plural, suggestion
from language.repair import beside_stand_ins, fields_at, stand_in
from language.templates import load_catalog
from language.yamlsource import Locator, SourceMap, YamlError, load_yaml
from workflows.plan import Plan

CONFIG_FILE = "touchpoint.yaml"
JOURNEYS_DIR = "journeys"
TEMPLATES_DIR = "templates"
JOURNEY_SUFFIXES = (".yaml", ".yml")
TEST_SUFFIXES = (".test.yaml", ".test.yml")

_FIELD_HINTS = {
    "timeout": 'add "timeout: 7d", and "on_timeout:" to say where to go when nobody reacts',
    "category": "marketing (needs consent, gets an unsubscribe link) or transactional",
    "template": "the name of a folder in templates/",
    "save_as": "the name later steps read the answer under: lookups.<name>",
    "steps": "a journey needs at least one step",
    "trigger": "say which event starts the journey: trigger: {event: Newsletter Subscribed}",
}
_KIND_HINTS = {
    "duration": "a whole number and a unit (s, m, h, d, w), e.g. 90m, 12h, 3d, 1d12h",
    "duration_zero": "write at least 1s, or leave the setting (or the wait) out",
    "duration_long": "past ten years it is a typo rather than a plan: check the number and unit",
    "offset": "a sign, a whole number and a unit, e.g. -1d or +2h",
    "time_of_day": 'hours 0-23 and minutes, e.g. time: "09:00" or time: "18:30"',
    "event_name": "the name exactly as your shop sends it with track()",
    "format": "write it in the form of the example",
    "every": 'e.g. every: monday 09:00 (or cron: "0 9 * * MON")',
    "cron": 'minute hour day-of-month month day-of-week, e.g. "0 9 * * MON"',
    "timezone": "an IANA name such as Europe/Berlin, America/New_York or UTC",
    "rate": "a number of starts per second or per minute, e.g. rate: 50/s",
    "schedule_date": "e.g. 2027-01-04 (a whole day) or 2027-01-04T09:00:00+01:00",
}
_UNREADABLE = "check that it is readable and saved as UTF-8 text"
_EMPTY_HINTS = {
    "if": "write a condition, e.g. profile.traits.vip | default(false)",
    "key": "write an expression over the event, e.g. event.properties.order_id",
}
_TYPE_WORDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
}


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    plans: dict[str, Plan] = field(default_factory=dict)
    config: ProjectConfig = field(default_factory=ProjectConfig)
    journey_files: int = 0
    template_files: int = 0
    config_file: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        checked = [plural(self.journey_files, "journey")]
        if self.template_files:
            checked.append(plural(self.template_files, "template file"))
        if self.config_file:
            checked.append(CONFIG_FILE)
        what = ", ".join(checked)
        if self.ok:
            return f"{what}: no problems"
        files = len({p.file for p in self.problems})
        return (
            f"{plural(len(self.problems), 'problem')} in {plural(files, 'file')} ({what} checked)"
        )


def validate(paths: Sequence[Path] = (), root: Path | None = None) -> Report:
    """Validate ``paths`` (default: the project's journeys, templates and config)."""
    root = (root or Path.cwd()).resolve()
    report = Report()
    wanted = [Path(p) for p in paths] or [
        root / JOURNEYS_DIR,
        root / TEMPLATES_DIR,
        root / CONFIG_FILE,
    ]
    resolved = [p if p.is_absolute() else (Path.cwd() / p) for p in wanted]
    for path in resolved:
        if not path.exists() and paths:
            report.problems.append(
                Problem(_display(path), 1, 1, "", "no such file or directory", "check the path")
            )

    config_path = root / CONFIG_FILE
    if config_path.exists():
        report.config, config_problems = load_config(config_path)
        report.config_file = any(_is_within(p, config_path) for p in resolved)
        report.problems += config_problems  # journeys depend on it: always shown

    templates_root = root / TEMPLATES_DIR
    catalog = load_catalog(templates_root, _display(templates_root))
    templates_requested = any(
        _is_within(templates_root, p) or _is_within(p, templates_root) for p in resolved
    )
    if templates_requested:
        report.problems += catalog.all_problems()
        report.template_files = catalog.file_count

    context = ProjectContext(config=report.config, templates=catalog)
    first_file: dict[str, tuple[str, int]] = {}
    for journey_file in _journey_files(resolved, exclude=templates_root):
        report.journey_files += 1
        plan, problems, source = load_journey(journey_file, context)
        report.problems += problems
        if plan is None:
            continue
        if plan.journey_id in first_file:
            other, line = first_file[plan.journey_id]
            report.problems.append(
                source.problem(
                    ("id",),
                    f'journey id "{plan.journey_id}" is already used by {other}:{line}',
                    "each journey needs its own id",
                )
            )
            continue
        first_file[plan.journey_id] = (source.file, source.locate(("id",)).line)
        report.plans[plan.journey_id] = plan
    if not templates_requested:  # shared layouts and partials affect every template
        report.problems += catalog.problems.get("", [])
    report.problems = sorted(set(report.problems))
    return report


class ProjectInvalid(UserError):
    """The project has problems: commands that run journeys refuse to start (exit 1)."""

    def __init__(self, report: Report) -> None:
        first = replace(report.problems[0], hint=None).format()
        super().__init__(
            f"the project has {plural(len(report.problems), 'problem')} (the first: {first}); "
            "run `touchpoint validate` to see them all"
        )
        self.report = report


def require_valid(root: Path) -> Report:
    """The project's report, or :class:`ProjectInvalid` when it has any problem."""
    report = validate((), root=root)
    if not report.ok:
        raise ProjectInvalid(report)
    return report


def load_journey(
    path: Path, context: ProjectContext, display: str | None = None
) -> tuple[Plan | None, list[Problem], SourceMap]:
    """Load, check and compile one journey file."""
    display = display or _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return (
            None,
            [Problem(display, 1, 1, "", f"cannot read the file: {error}", _UNREADABLE)],
            SourceMap(display),
        )
    return compile_text(text, display, context)


def compile_text(
    text: str, display: str, context: ProjectContext | None = None
) -> tuple[Plan | None, list[Problem], SourceMap]:
    """Check and compile journey YAML given as text; never raises on bad input."""
    context = context or ProjectContext()
    try:
        raw, source = load_yaml(text, display)
    except YamlError as error:
        return None, [error.problem], SourceMap(display)
    problems = list(source.problems)
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else _describe(raw)
        problems.append(
            source.problem(
                (),
                f"expected a journey (id, name, trigger, steps …), got {got}",
                "see docs/journeys.md for a complete example",
            )
        )
        return None, problems, source
    try:
        journey = a.Journey.model_validate(raw)
    except ValidationError as error:
        problems += schema_problems(error, raw, source, a.Journey)
        # Stand in for what the schema rejects, so that the other checks still run.
        stood_in, replaced = stand_in(raw, error, error_paths)
        if stood_in is not None:
            _, compile_problems = compile_journey(stood_in, source, context, raw, partial=True)
            problems += beside_stand_ins(compile_problems, replaced)
        return None, problems, source
    plan, compile_problems = compile_journey(journey, source, context, raw)
    return (plan if not problems else None), problems + compile_problems, source


def load_config(path: Path) -> tuple[ProjectConfig, list[Problem]]:
    """The project config and its problems (defaults where it cannot be read)."""
    display = _display(path)
    try:
        raw, source = load_yaml(path.read_text(encoding="utf-8"), display)
    except YamlError as error:
        return ProjectConfig(), [error.problem]
    except (OSError, UnicodeDecodeError) as error:
        return ProjectConfig(), [
            Problem(display, 1, 1, "", f"cannot read the file: {error}", _UNREADABLE)
        ]
    problems = list(source.problems)
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        problems.append(
            source.problem((), f"expected settings (key: value lines), got {_describe(raw)}")
        )
        return ProjectConfig(), problems
    for key_path, value in secret_fields(raw):
        if isinstance(value, str) and not ENV_REFERENCE.search(value):
            name = env_name_for(key_path)
            problems.append(
                source.problem(
                    key_path,
                    "secret written inline; secrets come from the environment",
                    f'write "${{{name}}}" here and set {name} where the worker runs',
                )
            )
    from language.compiler import _inline_secrets

    reported = {p.path for p in problems}
    problems += [p for p in _inline_secrets(raw, (), source) if p.path not in reported]
    try:
        config = ProjectConfig.model_validate(raw)
    except ValidationError as error:
        problems += schema_problems(error, raw, source, ProjectConfig)
        return ProjectConfig(), problems

    def report(path: KeyPath, message: str, hint: str | None = None) -> None:
        problems.append(source.problem(path, message, hint))

    check_project_policies(config, report)
    return config, problems


def config_source(root: Path) -> SourceMap:
    """Where each setting of the project's touchpoint.yaml stands (empty when unreadable)."""
    path = root / CONFIG_FILE
    display = _display(path)
    try:
        return load_yaml(path.read_text(encoding="utf-8"), display)[1]
    except (OSError, UnicodeDecodeError, YamlError):
        return SourceMap(display)


# --- turning pydantic's errors into a marketer's --------------------------------------------


def error_paths(error: ValidationError) -> list[tuple[KeyPath, Any]]:
    """Each of pydantic's errors, with its path as the YAML has it."""
    return [(_strip_tags(tuple(d["loc"])), d) for d in error.errors()]


def schema_problems(
    error: ValidationError, raw: Any, source: Locator, model: type[BaseModel]
) -> list[Problem]:
    details = error_paths(error)
    misspelt = set()
    for path, detail in details:
        if detail["type"] == "extra_forbidden":
            near = did_you_mean(str(path[-1]), fields_at(model, path[:-1], raw))
            if near:
                misspelt.add((*path[:-1], near))
    return [
        _translate(detail, path, raw, source, model)
        for path, detail in details
        if not (detail["type"] == "missing" and path in misspelt)
    ]


def _strip_tags(loc: tuple[Any, ...]) -> KeyPath:
    """Pydantic puts the union tag after a step's index; the YAML has no such level."""
    path: list[str | int] = []
    i = 0
    while i < len(loc):
        path.append(loc[i])
        if loc[i] == "steps" and i + 2 < len(loc) and isinstance(loc[i + 1], int):
            path.append(loc[i + 1])
            i += 3  # skip the tag
            continue
        if loc[i] == "destinations" and i + 2 < len(loc):  # discriminated by "type"
            path.append(loc[i + 1])
            i += 3
            continue
        i += 1
    return tuple(path)


def _translate(
    detail: Any, path: KeyPath, raw: Any, source: Locator, model: type[BaseModel]
) -> Problem:
    kind, value = detail["type"], detail.get("input")
    name = path[-1] if path else ""
    if kind == "missing":
        hint = _FIELD_HINTS.get(str(name), f'add "{name}: …" here')
        return source.problem(path, f'missing "{name}"', hint)
    if kind == "extra_forbidden":
        fields = fields_at(model, path[:-1], raw)
        near = did_you_mean(str(name), fields)
        allowed = f"allowed here: {', '.join(fields)}" if fields else None
        return source.problem(
            path,
            f'unknown field "{name}"{suggestion(str(name), fields)}',
            f'rename it to "{near}"' if near else allowed,
            key=True,
        )
    if kind == "step_kind":
        return _step_kind_problem(path, value, source)
    if kind in ("literal_error", "enum"):
        expected = detail.get("ctx", {}).get("expected", "")
        options = [o.strip(" '") for o in expected.replace(" or ", ", ").split(",")]
        return source.problem(
            path,
            f"expected one of {', '.join(options)}, got {_describe(value)}"
            f"{suggestion(str(value), options)}",
            _FIELD_HINTS.get(str(name), "write one of these exactly as shown"),
        )
    if kind in _TYPE_WORDS:
        hint = f"write {_TYPE_WORDS[kind]} here"
        if kind == "string_type" and isinstance(value, int | float | bool):
            hint = f'put it in quotes to make it text: "{_yaml_scalar(value)}"'
        return source.problem(path, f"expected {_TYPE_WORDS[kind]}, got {_describe(value)}", hint)
    if kind in ("too_short", "string_too_short"):
        minimum = detail.get("ctx", {}).get("min_length", 1)
        if isinstance(value, str):
            hint = _EMPTY_HINTS.get(str(name), f"write the {name} here")
            return source.problem(path, f'"{name}" is empty', hint)
        return source.problem(
            path,
            f"needs at least {plural(minimum, 'entry').replace('entrys', 'entries')}",
            "a split needs at least two paths"
            if name == "split"
            else _FIELD_HINTS.get(str(name), f"add entries to {name}"),
        )
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return source.problem(path, f"expected a number from 1 to 100, got {_describe(value)}")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        ctx = detail.get("ctx", {})
        options = [o.strip(" '") for o in str(ctx.get("expected_tags", "")).split(",")]
        tag = ctx.get("tag")
        if tag is None:
            return source.problem(
                path, f'missing "type"; one of {", ".join(options)}', f"add type: {options[0]}"
            )
        return source.problem(
            (*path, ctx.get("discriminator", "type").strip("'")),
            f"expected one of {', '.join(options)}, got {_describe(tag)}"
            f"{suggestion(str(tag), options)}",
            "write one of these exactly as shown",
        )
    if kind == "string_pattern_mismatch":
        return source.problem(
            path,
            f"unexpected format {_describe(value)}",
            f"expected text matching {detail.get('ctx', {}).get('pattern')}",
        )
    message = str(detail.get("msg", "invalid value"))
    return source.problem(path, message.removeprefix("Value error, "), _KIND_HINTS.get(kind))


def _step_kind_problem(path: KeyPath, value: Any, source: Locator) -> Problem:
    kinds = ", ".join(a.STEP_KEYS)
    if isinstance(value, dict):
        present = [k for k in a.STEP_KEYS if k in value]
        if len(present) > 1:
            return source.problem(
                path,
                f"a step does one thing, but this one has {' and '.join(present)}",
                "split it into separate steps, one after the other",
            )
        for key in value:
            near = did_you_mean(str(key), a.STEP_KEYS)
            if near:
                return source.problem(
                    (*path, key),
                    f'unknown step type "{key}"{suggestion(str(key), a.STEP_KEYS)}',
                    f'rename it to "{near}"',
                    key=True,
                )
        return source.problem(
            path,
            "this step does nothing: it needs one of " + kinds,
            'e.g. "wait: 3d", or "send: email" with "template: …"',
        )
    if isinstance(value, str):
        return source.problem(
            path,
            f'"{value}" is not a step{suggestion(value, [a.END])}',
            'a step is a mapping such as "wait: 3d"; "- end" alone ends the journey',
        )
    return source.problem(
        path,
        f"expected a step (such as wait: 3d), got {_describe(value)}",
        'a step is a mapping such as "wait: 3d"; "- end" alone ends the journey',
    )


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 40 else f'"{value[:37]}…"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


# --- files ----------------------------------------------------------------------------------


def _journey_files(paths: Iterable[Path], exclude: Path) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                f for f in path.rglob("*") if _is_journey_file(f) and not _is_within(exclude, f)
            )
        elif path.is_file() and path.name != CONFIG_FILE and path.suffix in JOURNEY_SUFFIXES:
            files.append(path)
    return files


def _is_journey_file(path: Path) -> bool:
    name = path.name
    return (
        path.is_file()
        and name != CONFIG_FILE
        and name.endswith(JOURNEY_SUFFIXES)
        and not name.endswith(TEST_SUFFIXES)
    )


def _is_within(directory: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def _display(path: Path) -> str:
    """A path as problems show it: relative to the working directory where possible."""
    try:
        return Path(os.path.relpath(path.resolve(), Path.cwd())).as_posix()
    except ValueError:
        return path.as_posix()
