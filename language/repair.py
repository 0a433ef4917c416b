"""Stand-ins for what the schema rejects, so that one malformed value does not hide the rest.

A journey with a bad duration can still have an unknown template and a broken expression in
other steps. :func:`stand_in` puts a harmless value where each schema error is (or drops an
optional or unknown field, or stands in for a whole step), until the journey validates; the
compiler then checks everything else, and :func:`beside_stand_ins` drops what it says about the
places stood in for — those have their schema error already.

Also here: finding the model a path of a document points into (for "did you mean …?").
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from language import authoring as a
from language.problems import Path, Problem, format_path

MAX_ROUNDS = 12
_CANDIDATES: tuple[Any, ...] = (
    "true",
    "1d",
    "09:00",
    "+1d",
    "mon",
    "marketing",
    "email",
    "GET",
    "one_at_a_time",
    "awareness",
    "stand-in",
    1,
    True,
    {},
    {"event": "Stand In"},
    {"if": "true", "goto": "end"},
    [{"if": "true", "goto": "end"}],
    [{"name": "a", "percent": 50}, {"name": "b", "percent": 50}],
    {"stand_in": "true"},
    [{"wait": "1d"}],
    [],
)
_STEP_STAND_IN = {"wait": "1d"}

STEP_MODELS: dict[str, type[BaseModel]] = {
    "send": a.SendStep,
    "wait": a.WaitStep,
    "wait_until": a.WaitUntilStep,
    "wait_for": a.WaitForStep,
    "branch": a.BranchStep,
    "split": a.SplitStep,
    "lookup": a.LookupStep,
    "set": a.SetStep,
    "goto": a.GotoStep,
    "end": a.EndStep,
}


def stand_in(
    raw: dict[str, Any], error: ValidationError, paths_of: Any
) -> tuple[a.Journey | None, list[Path]]:
    """The journey with stand-ins for every schema error, and the paths stood in for;
    ``None`` when no stand-in makes it valid. ``paths_of(error)`` lists each error's path
    and pydantic detail (as the validator reads them)."""
    document = copy.deepcopy(raw)
    replaced: list[Path] = []
    tries: dict[Path, int] = {}
    for _ in range(MAX_ROUNDS):
        for path, detail in paths_of(error):
            target = _target(path, detail, tries)
            if target is None:
                return None, replaced
            tries[target] = tries.get(target, 0) + 1
            if not _replace(document, target, detail):
                return None, replaced
            replaced.append(target)
        try:
            return a.Journey.model_validate(document), replaced
        except ValidationError as again:
            error = again
    return None, replaced


def beside_stand_ins(problems: Iterable[Problem], replaced: list[Path]) -> list[Problem]:
    """The problems not about a place stood in for (nor inside it, nor around it)."""
    places = [format_path(path) for path in replaced]
    whole_trigger = () in replaced or ("trigger",) in replaced
    kept = []
    for problem in problems:
        if any(_related(problem.path, place) for place in places):
            continue
        if whole_trigger and "trigger key" in problem.message:
            continue
        kept.append(problem)
    return kept


def _related(path: str, place: str) -> bool:
    if not path or not place:
        return False
    if path == place:
        return True
    return any(
        longer.startswith(shorter) and longer[len(shorter)] in ".["
        for shorter, longer in ((place, path), (path, place))
        if len(longer) > len(shorter)
    )


def _target(path: Path, detail: Any, tries: dict[Path, int]) -> Path | None:
    """Where to stand in for error ``detail`` at ``path``: the path itself at first, its
    parent once a stand-in there did not do; a whole step for anything about a step's kind."""
    if "[key]" in path:  # a bad key of a mapping (set: {"my var": …}): drop the entry
        path = tuple(p for p in path if p != "[key]")
    target = path
    while tries.get(target, 0) >= 1 and target:
        target = target[:-1]
    if len(target) >= 2 and target[0] == "steps":
        inside = target[2:]
        if detail["type"] == "step_kind" or inside in ((), ("send",)):
            target = target[:2]  # what kind of step it is, or its channel: the whole step
    if not target or (len(target) == 1 and tries.get(target, 0) >= 2):
        return None
    return target


def _replace(document: dict[str, Any], target: Path, detail: Any) -> bool:
    """Put a stand-in at ``target`` (or drop it, if that is allowed); ``False``: impossible."""
    parent = _get(document, target[:-1])
    last = target[-1]
    if parent is None:
        return False
    if len(target) == 2 and target[0] == "steps" and isinstance(last, int):
        if not isinstance(parent, list) or not 0 <= last < len(parent):
            return False
        parent[last] = _step_stand_in(parent[last])
        return True
    field = field_at(target, document)
    droppable = detail["type"] == "extra_forbidden" or (field is not None and not field[1])
    if droppable and isinstance(parent, dict):
        parent.pop(last, None)
        return True
    if field is None:
        return False
    value = _stand_in_value(field[0])
    if value is _NOTHING:
        return False
    fits = isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent)
    if not (isinstance(parent, dict) or fits):
        return False
    parent[last] = value
    return True


def _step_stand_in(step: Any) -> dict[str, Any]:
    """A step that only waits, keeping the original's id so that jumps to it still land."""
    stand = dict(_STEP_STAND_IN)
    if isinstance(step, dict) and isinstance(step.get("id"), str):
        try:
            a.StepBase.model_validate({"id": step["id"]})
            stand["id"] = step["id"]
        except ValidationError:
            pass
    return stand


_NOTHING = object()


def _stand_in_value(annotation: Any) -> Any:
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    except Exception:
        return _NOTHING
    for candidate in _CANDIDATES:
        try:
            adapter.validate_python(copy.deepcopy(candidate))
        except ValidationError:
            continue
        return copy.deepcopy(candidate)
    return _NOTHING


def _get(document: Any, path: Path) -> Any:
    current = document
    for part in path:
        if not has(current, part):
            return None
        current = current[part]
    return current


# --- which model a path points into ------------------------------------------------------------


def field_at(path: Path, raw: Any, model: type[BaseModel] = a.Journey) -> tuple[Any, bool] | None:
    """The annotation (with its constraints) of the value at ``path``, and whether it is
    required; ``None`` when the path leads nowhere the model knows."""
    current: Any = model
    value: Any = raw
    annotation: Any = None
    required = True
    for part in path:
        inner = _strip(current)
        origin, args = get_origin(inner), get_args(inner)
        picked = pick_model(current, value)
        if origin is list and isinstance(part, int):  # before the model: list[OneModel] too
            annotation, required = args[0], True
        elif origin is dict:
            annotation, required = args[1], False
        elif isinstance(picked, type) and issubclass(picked, BaseModel):
            info = picked.model_fields.get(str(part)) or next(
                (f for f in picked.model_fields.values() if f.alias == part), None
            )
            if info is None:
                return None
            annotation = (
                Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
            )
            required = info.is_required()
        else:
            return None
        value = value[part] if has(value, part) else None
        current = annotation
    return annotation, required


def fields_at(model: type[BaseModel], path: Path, raw: Any) -> list[str]:
    """The field names the model accepts at ``path`` (for "did you mean …?")."""
    current: Any = model
    value = raw
    for part in path:
        value = value[part] if has(value, part) else None
        current = _descend(current, part, value)
        if current is None:
            return []
    current = pick_model(current, value)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _descend(annotation: Any, part: Any, value: Any) -> Any:
    """The annotation one level down: a model's field, a list's item or a dict's value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(str(part)) or next(
            (f for f in annotation.model_fields.values() if f.alias == part), None
        )
        return info.annotation if info else None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and isinstance(part, int):
        return args[0]
    if origin is dict:
        return args[1]
    for arg in args:  # Optional / Annotated: look inside
        found = _descend(arg, part, value)
        if found is not None:
            return found
    return None


def pick_model(annotation: Any, value: Any) -> Any:
    """Resolve a union of models by the raw value: a step by its step key, else by ``type``."""
    members = models_in(annotation)
    if len(members) <= 1:
        return members[0] if members else annotation
    if isinstance(value, dict):
        kind = a.step_kind(value)
        if kind in STEP_MODELS and STEP_MODELS[kind] in members:
            return STEP_MODELS[kind]
        for member in members:
            field = member.model_fields.get("type")
            if field is not None and value.get("type") in get_args(field.annotation):
                return member
    return None


def models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in models_in(arg)]


def _strip(annotation: Any) -> Any:
    """``Annotated[list[X], …]`` or ``list[X] | None`` → ``list[X]``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if origin is not None and origin not in (list, dict) and len(args) == 1:
            annotation = args[0]
            continue
        return annotation


def has(container: Any, part: Any) -> bool:
    if isinstance(container, dict):
        return part in container
    if isinstance(container, list):
        return isinstance(part, int) and 0 <= part < len(container)
    return False
