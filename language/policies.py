"""A journey's delivery policies and subscription topics: checked against ``touchpoint.yaml``
and folded into what each send step carries (:class:`workflows.policy_models.SendPolicies`).

The rules, as docs/journeys.md states them:

* a journey's own frequency cap or quiet hours with the name of a project one of the same
  kind *replaces* it for this journey; the same name as a project policy of the other kind, or
  twice in the journey, is an error (``exempt: [name]`` would be ambiguous);
* ``exempt`` and ``actions`` name a policy of the project or of the journey;
* a policy that never holds the journey's messages (its ``categories`` leave out the journey's
  category) cannot be written into, exempted from or given an action in that journey;
* a ``topic`` must be one of ``topics:`` when the project declares any, and a transactional
  journey has none: transactional messages go whatever the customer's topics.

What a send step carries: the journey's caps and quiet hours (durations in seconds, weekdays
0 = Monday), ``exempt`` = the journey's and the step's, ``actions`` = the journey's with the
step's over them, ``defer_max`` = the step's, else the journey's. Nothing set: ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from config.policies import (
    FrequencyCap,
    JourneyPolicies,
    PolicySettings,
    QuietHours,
    StepPolicies,
)
from config.project import ProjectConfig
from language.problems import Path, did_you_mean, suggestion
from workflows.durations import parse_duration
from workflows.policy_models import SendPolicies

THIS_JOURNEY = "this journey"
KINDS = {"cap": "frequency cap", "quiet": "quiet hours"}

Report = Callable[..., None]
"""``report(path, message, hint=None, *, key=False)``: the compiler's way to add a problem."""


@dataclass(frozen=True)
class _Rule:
    name: str
    kind: str  # "cap" or "quiet"
    categories: tuple[str, ...]
    where: str  # "touchpoint.yaml" or "this journey"


# --- folding: what a send step carries -------------------------------------------------------


def send_policies(
    journey: JourneyPolicies | None, step: StepPolicies | None
) -> SendPolicies | None:
    """The journey's and the step's settings as one :class:`SendPolicies` (``None``: none)."""
    if journey is None and step is None:
        return None
    journey = journey or JourneyPolicies()
    step = step or StepPolicies()
    exempt = list(dict.fromkeys([*journey.exempt, *step.exempt]))
    defer_max = step.defer_max or journey.defer_max
    folded = SendPolicies(
        caps=tuple(cap.rule() for cap in journey.frequency_caps),
        quiet=tuple(rule.rule() for rule in journey.quiet_hours),
        exempt=tuple(exempt),
        actions={**journey.actions, **step.actions},
        defer_max_seconds=parse_duration(defer_max) if defer_max else None,
    )
    return None if folded == SendPolicies() else folded


# --- checks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendSettings:
    """What the checks need of one send step: where it is, and its topic and policies."""

    path: Path
    topic: str | None
    policies: StepPolicies | None


def check_policies(
    category: str,
    topic: str | None,
    policies: JourneyPolicies | None,
    sends: Sequence[SendSettings],
    config: ProjectConfig,
    report: Report,
) -> None:
    """Report every problem of a journey's (and its sends') topics and policies."""
    _check_topic(("topic",), topic, category, config, report)
    for send in sends:
        _check_topic((*send.path, "topic"), send.topic, category, config, report)
    project = _project_rules(config)
    own = _journey_rules(policies, project, category, report) if policies else {}
    known = {**project, **own}
    if policies is not None:
        _check_names(("policies",), policies.exempt, policies.actions, known, category, report)
    for send in sends:
        if send.policies is not None:
            path = (*send.path, "policies")
            _check_names(path, send.policies.exempt, send.policies.actions, known, category, report)


def check_project_policies(config: ProjectConfig, report: Report) -> None:
    """``touchpoint.yaml``'s policies: known channels, and one policy per name (a cap and
    quiet hours of the same name would make ``exempt: [name]`` ambiguous)."""
    seen: dict[str, str] = {}
    for path, rule in _own(config.policies):
        kind = "cap" if isinstance(rule, FrequencyCap) else "quiet"
        other = seen.setdefault(rule.name, kind)
        if other != kind:
            report(
                (*path, "name"),
                f'a {KINDS[other]} is also named "{rule.name}": exempt and actions name a '
                "policy by its name, so a name may stand for one policy only",
                "give it another name",
            )


def _check_topic(
    path: Path, topic: str | None, category: str, config: ProjectConfig, report: Report
) -> None:
    if topic is None:
        return
    if category == "transactional":
        report(
            path,
            "transactional messages go whatever the customer's topics: a topic would never "
            "hold one",
            "remove topic, or make the journey marketing if customers may choose not to get it",
        )
    elif config.topics and topic not in config.topics:
        report(
            path,
            f'unknown topic "{topic}"{suggestion(topic, config.topics)}',
            f"use one of touchpoint.yaml's topics ({', '.join(config.topics)}), or declare it "
            "under topics:",
        )


def _project_rules(config: ProjectConfig) -> dict[str, _Rule]:
    rules = {
        cap.name: _Rule(cap.name, "cap", tuple(cap.categories), "touchpoint.yaml")
        for cap in config.policies.frequency_caps
    }
    for quiet in config.policies.quiet_hours:
        rules.setdefault(
            quiet.name, _Rule(quiet.name, "quiet", tuple(quiet.categories), "touchpoint.yaml")
        )
    return rules


def _journey_rules(
    policies: JourneyPolicies, project: dict[str, _Rule], category: str, report: Report
) -> dict[str, _Rule]:
    own: dict[str, _Rule] = {}
    for path, rule in _own(policies):
        kind = "cap" if isinstance(rule, FrequencyCap) else "quiet"
        if rule.name in own:
            report(
                (*path, "name"),
                f'two of this journey\'s policies are named "{rule.name}"',
                "give each its own name: exempt and actions refer to policies by name",
            )
        elif (other := project.get(rule.name)) is not None and other.kind != kind:
            report(
                (*path, "name"),
                f'touchpoint.yaml has {KINDS[other.kind]} named "{rule.name}": a journey\'s '
                f"{KINDS[kind]} may replace a project {KINDS[kind]} of the same name, not "
                f"{KINDS[other.kind]}",
                "give it another name",
            )
        if category not in rule.categories:
            told = "categories" in rule.model_fields_set
            holds = " and ".join(rule.categories)
            report(
                (*path, "categories") if told else path,
                f'"{rule.name}" holds only {holds} messages'
                f"{'' if told else ' (the default categories)'}, and this journey sends "
                f"{category} ones: it would never hold one of them",
                f"add {category} to its categories, or remove it"
                if told
                else f"add categories: [{category}], or remove it",
            )
        own.setdefault(rule.name, _Rule(rule.name, kind, tuple(rule.categories), THIS_JOURNEY))
    return own


def _own(
    policies: JourneyPolicies | PolicySettings,
) -> Iterator[tuple[Path, FrequencyCap | QuietHours]]:
    """A journey's (or ``touchpoint.yaml``'s) caps and quiet hours, each with its path."""
    for i, cap in enumerate(policies.frequency_caps):
        yield ("policies", "frequency_caps", i), cap
    for i, quiet in enumerate(policies.quiet_hours):
        yield ("policies", "quiet_hours", i), quiet


def _check_names(
    path: Path,
    exempt: list[str],
    actions: Mapping[str, str],
    known: dict[str, _Rule],
    category: str,
    report: Report,
) -> None:
    named: list[tuple[Path, str, bool]] = [
        ((*path, "exempt", i), n, False) for i, n in enumerate(exempt)
    ]
    named += [((*path, "actions", name), name, True) for name in actions]
    for where, name, key in named:
        rule = known.get(name)
        if rule is None:
            near = did_you_mean(name, known)
            listed = ", ".join(known)
            report(
                where,
                f'no policy named "{name}" in touchpoint.yaml or this journey'
                f"{suggestion(name, known)}",
                f'rename it to "{near}"'
                if near
                else (
                    f"the policies are {listed}"
                    if listed
                    else "define it under policies: in touchpoint.yaml or in this journey"
                ),
                key=key,
            )
        elif category not in rule.categories and rule.where != THIS_JOURNEY:  # else told there
            holds = " and ".join(rule.categories)
            report(
                where,
                f'"{name}" ({rule.where}) holds only {holds} messages, and this journey sends '
                f"{category} ones: there is nothing to exempt or change",
                "remove it from here",
                key=key,
            )
