"""Hypothesis strategies for the conformance suite: random valid journeys (YAML text, compiled
by the project's own compiler) and random event streams over a few customers.

Both are drawn so that the interesting cases come often: events on a coarse grid of hours, so
that they land together and exactly at the end of a wait or a timeout; waits in whole hours
and days; a start a few days before the spring clock change in Berlin; keys that match and
keys that do not.

Journeys only jump forward (no loops), every step falls through to the next, and an ``end``
stands only before a step some earlier step jumps to: every step stays reachable, so every
journey drawn is valid by construction (``test_strategies.py`` checks that, on many examples).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from language.compiler import ProjectContext
from language.problems import Problem
from language.templates import load_catalog
from language.validator import compile_text, load_config
from simulation.scenario import EventSpec, ProfileSpec
from simulation.simulator import Scenario
from workflows.plan import Plan

TRIGGER = "Start"
REPLY = "Reply"
STOP = "Stop"
GOAL = "Buy"
NOISE = "Browse"
KEYS = ("a", "b")
STARTS = (
    datetime.fromisoformat("2027-01-04T09:00:00+00:00"),  # a Monday morning
    datetime.fromisoformat("2027-03-25T22:30:00+00:00"),  # Berlin's clocks spring forward on 28th
)
DAYS = 20  # events fall within this many days of the start
HORIZON = timedelta(days=DAYS + 2)  # and a little longer: late runs are still going
ZONES = (None, "Europe/Berlin", "America/New_York", "UTC")

CONFIG = """\
defaults:
  locale: en
  timezone: Europe/Berlin
  sender: {email: hello@shop.example, name: Shop}
email:
  provider: maildir
channels:
  sms:
    from: "+4930901820"
destinations:
  team:
    type: slack
    url: ${TEAM_WEBHOOK_URL}
  crm:
    type: webhook
    url: https://crm.shop.example/hooks
policies:
  frequency_caps:
    - name: two-a-day
      limit: 2
      per: 24h
      channels: [email]
  quiet_hours:
    - name: nights
      channels: [email]
      from: "22:00"
      to: "07:00"
"""

TEMPLATES = {
    "hello/en.html": (
        "---\nsubject: Hello {{ profile.id }} ({{ vars.tier | default('none') }})\n---\n"
        "<p>Hi {{ profile.traits.name | default('there') }}</p>\n"
    ),
    "hello/de.html": "---\nsubject: Hallo {{ profile.id }}\n---\n<p>Hallo</p>\n",
    "nudge/en.html": "---\nsubject: Still thinking, {{ profile.id }}?\n---\n<p>Nudge</p>\n",
    "note/en.md": "Customer `{{ profile.id }}` is in {{ journey.name }}\n",
    "ping/en.json": '{"customer": {{ profile.id | tojson }}, "n": {{ vars.n | default(0) }}}\n',
    "text/en.txt": "Hi {{ profile.traits.name | default('there') }}, {{ journey.name }}\n",
    "text/de.txt": "Hallo {{ profile.id }}\n",
}
EMAIL_TEMPLATES = ("hello", "nudge")


def write_project(root: Path) -> Path:
    """A project for generated journeys: its config (caps, quiet hours, a chat and a webhook
    destination) and small templates that read the profile and ``vars``."""
    (root / "journeys").mkdir(parents=True, exist_ok=True)
    (root / "touchpoint.yaml").write_text(CONFIG, encoding="utf-8")
    for name, text in TEMPLATES.items():
        path = root / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def project_context(root: Path) -> ProjectContext:
    config, problems = load_config(root / "touchpoint.yaml")
    assert problems == [], [p.format() for p in problems]
    return ProjectContext(config=config, templates=load_catalog(root / "templates", "templates"))


def compile_journey(text: str, context: ProjectContext) -> tuple[Plan | None, list[Problem]]:
    plan, problems, _ = compile_text(text, "journeys/generated.yaml", context)
    return plan, problems


# --- journeys ---------------------------------------------------------------------------------

DURATIONS = ("1h", "6h", "12h", "1d", "2d", "3d", "7d", "1d12h")
TIMES = ("07:00", "09:00", "12:30", "23:00")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVENT_CONDITIONS = (
    "event.properties.plan | default('') == 'pro'",
    "event.properties.n | default(0) >= 2",
)
PROFILE_CONDITIONS = (
    "profile.traits.vip | default(false)",
    "profile.traits.score | default(0) >= 5",
)


STEP_KINDS: tuple[str, ...] = ("send", "send", "wait", "wait", "wait_until", "wait_for")
STEP_KINDS += ("wait_for", "branch", "split", "set")  # waits twice as often: runs that last


@dataclass
class _Draft:
    """A step before the jumps are known: its YAML mapping and which jump fields it has."""

    body: dict[str, Any]
    jumps: tuple[str, ...] = ()  # "goto" of branch cases / split paths, on_event, on_timeout


@st.composite
def _send(draw: st.DrawFn) -> dict[str, Any]:
    channel = draw(st.sampled_from(("email", "email", "email", "chat", "webhook", "sms")))
    if channel == "email":
        step: dict[str, Any] = {"send": "email", "template": draw(st.sampled_from(EMAIL_TEMPLATES))}
    elif channel == "sms":
        step = {"send": "sms", "template": "text"}
    elif channel == "chat":
        step = {"send": "chat", "to": "team", "template": "note"}
    else:
        step = {"send": "webhook", "to": "crm", "template": "ping"}
    if draw(st.booleans()) and channel != "email":
        step["skip_on_failure"] = True
    return step


@st.composite
def _wait_until(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"time": draw(st.sampled_from(TIMES))}
    if draw(st.booleans()):
        days = draw(st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=3, unique=True))
        spec["days"] = sorted(days, key=WEEKDAYS.index)
    return {"wait_until": spec}


@st.composite
def _branch(draw: st.DrawFn, condition: st.SearchStrategy[str]) -> dict[str, Any]:
    cases = draw(st.lists(condition, min_size=1, max_size=2, unique=True))
    return {"branch": [{"if": text} for text in cases]}


@st.composite
def _split(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(2, 3))
    cuts = sorted(
        draw(st.lists(st.integers(1, 99), min_size=count - 1, max_size=count - 1, unique=True))
    )
    shares = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
    holdout = draw(st.sampled_from([None, *range(count)]))
    paths = []
    for index, share in enumerate(shares):
        path: dict[str, Any] = {"name": f"path-{index}", "percent": share}
        if index == holdout:
            path["holdout"] = True
        paths.append(path)
    return {"split": paths}


@st.composite
def _set(draw: st.DrawFn) -> dict[str, Any]:
    values = {
        "tier": "'gold' if profile.traits.vip | default(false) else 'standard'",
        "n": "event.properties.n | default(0) + 1",
    }
    names = draw(st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=2, unique=True))
    return {"set": {name: values[name] for name in names}}


@st.composite
def _wait_for(draw: st.DrawFn, keyed: bool) -> dict[str, Any]:
    step: dict[str, Any] = {"wait_for": REPLY, "timeout": draw(st.sampled_from(DURATIONS))}
    if keyed and draw(st.booleans()):
        step["key"] = "event.properties.k"
    if draw(st.booleans()):
        step["if"] = "event.properties.ok | default(true)"
    return step


@st.composite
def _step(draw: st.DrawFn, keyed: bool, has_vars: bool) -> _Draft:
    kind = draw(st.sampled_from(STEP_KINDS))
    if kind == "send":
        return _Draft(draw(_send()))
    if kind == "wait":
        return _Draft({"wait": draw(st.sampled_from(DURATIONS))})
    if kind == "wait_until":
        return _Draft(draw(_wait_until()))
    if kind == "wait_for":
        jump = draw(st.sampled_from(((), ("on_event",), ("on_timeout",))))
        return _Draft(draw(_wait_for(keyed)), jump)
    if kind == "branch":
        conditions = [*PROFILE_CONDITIONS, *EVENT_CONDITIONS]
        if has_vars:
            conditions.append("vars.tier | default('') == 'gold'")
        return _Draft(draw(_branch(st.sampled_from(conditions))), ("goto",))
    if kind == "split":
        return _Draft(draw(_split()), ("goto",))
    return _Draft(draw(_set()))


@st.composite
def _steps(draw: st.DrawFn, keyed: bool) -> list[Any]:
    count = draw(st.integers(1, 6))
    drafts: list[_Draft] = []
    for _ in range(count):
        has_vars = any("set" in d.body for d in drafts)
        drafts.append(draw(_step(keyed, has_vars)))
    ids = [f"s{index}" for index in range(count)]
    targeted: set[int] = set()

    def target(index: int) -> str:
        """A jump from step ``index``: to a later step (forward only: no loops) or ``end``."""
        later = list(range(index + 1, count))
        choice = draw(st.sampled_from([-1, *later]))
        if choice < 0:
            return "end"
        targeted.add(choice)
        return ids[choice]

    for index, draft in enumerate(drafts):
        body = draft.body
        if "branch" in body:
            for case in body["branch"]:
                case["goto"] = target(index)
            if draw(st.booleans()) and index + 1 < count:
                body["else"] = ids[index + 1]  # still falls through to the next step
        elif "split" in body:
            for path in body["split"][1:]:  # the first path goes on with the next step
                if draw(st.booleans()):
                    path["goto"] = target(index)
        else:
            for field in draft.jumps:
                body[field] = target(index)
    steps: list[Any] = []
    for index, draft in enumerate(drafts):
        previous = drafts[index - 1].body if index else {}
        falls_through = "else" not in previous  # an end after a branch with else: unreachable
        if index in targeted and falls_through and draw(st.booleans()):
            steps.append("end")  # a bare "- end"
        steps.append({"id": ids[index], **draft.body})
    return steps


@st.composite
def journey_documents(draw: st.DrawFn, journey_id: str = "generated") -> dict[str, Any]:
    """A journey as the mapping its YAML file holds."""
    keyed = draw(st.booleans())
    trigger: dict[str, Any] = {"event": TRIGGER}
    if draw(st.integers(0, 2)) == 0:
        trigger["if"] = draw(st.sampled_from(EVENT_CONDITIONS))
    if keyed:
        trigger["key"] = "event.properties.k"
    reentry = draw(st.sampled_from(("once", "one_at_a_time", "every_time")))
    entry: dict[str, Any] = {"reentry": reentry}
    if reentry == "one_at_a_time" and draw(st.booleans()):
        entry["after"] = draw(st.sampled_from(("1d", "3d")))
    if draw(st.integers(0, 3)) == 0:
        entry["if"] = draw(st.sampled_from(PROFILE_CONDITIONS))
    document: dict[str, Any] = {
        "id": journey_id,
        "name": f"Generated {journey_id}",
        "category": draw(st.sampled_from(("marketing", "transactional"))),
        "trigger": trigger,
        "entry": entry,
    }
    exits: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 2))):
        rule: dict[str, Any] = {"event": STOP, "reason": f"stopped-{len(exits)}"}
        if keyed and draw(st.booleans()):
            rule["key"] = "event.properties.k"
        if draw(st.booleans()):
            rule["if"] = "event.properties.hard | default(false)"
        exits.append(rule)
    if exits:
        document["exit_when"] = exits
    if draw(st.booleans()):
        goal: dict[str, Any] = {"event": GOAL, "within": draw(st.sampled_from(("1d", "3d", "10d")))}
        if keyed and draw(st.booleans()):
            goal["key"] = "event.properties.k"
        if draw(st.booleans()):
            goal["if"] = "event.properties.total | default(0) >= 100"
        document["goal"] = goal
    document["steps"] = draw(_steps(keyed))
    return document


def journey_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def journey_texts(journey_id: str = "generated") -> st.SearchStrategy[str]:
    """A journey file's text."""
    return journey_documents(journey_id).map(journey_yaml)


# --- customers and events ---------------------------------------------------------------------


@st.composite
def customers(draw: st.DrawFn) -> list[ProfileSpec]:
    count = draw(st.integers(1, 3))
    people = []
    for index in range(count):
        traits: dict[str, Any] = {}
        if draw(st.integers(0, 3)):
            traits["vip"] = draw(st.sampled_from((True, True, False)))
        if draw(st.booleans()):
            traits["score"] = draw(st.integers(0, 9))
        people.append(
            ProfileSpec(
                id=f"c{index}",
                email=f"c{index}@example.com" if draw(st.integers(0, 5)) else None,
                phone=f"+49151000000{index}" if draw(st.integers(0, 3)) else None,
                locale=draw(st.sampled_from((None, "en", "de"))),
                timezone=draw(st.sampled_from(ZONES)),
                traits=traits,
            )
        )
    return people


def offset_text(seconds: int) -> str:
    """``+3d11h30m1s``: seconds after the start as a scenario writes them."""
    if seconds == 0:
        return "+0"
    parts, rest = [], seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "+" + "".join(parts)


def _hours() -> st.SearchStrategy[int]:
    """Hours after the start: whole days (which meet waits of days) and any hour."""
    return st.one_of(st.integers(0, DAYS).map(lambda d: d * 24), st.integers(0, DAYS * 24))


FOLLOW_UPS = (0, 0, 1, 3600, 6 * 3600, 12 * 3600, 86400, 86400 + 1, 2 * 86400, 3 * 86400, 7 * 86400)
"""Seconds after a trigger that its follow-ups come at: at once, a second later, and at the
ends of the waits and timeouts journeys draw (``DURATIONS``), so that they meet exactly."""


@st.composite
def _event(draw: st.DrawFn, seconds: int, user: str, kind: str, key: str) -> tuple[int, EventSpec]:
    at = offset_text(seconds)
    if kind == "identify":
        traits: dict[str, Any] = draw(
            st.fixed_dictionaries(
                {}, optional={"vip": st.booleans(), "score": st.integers(0, 9)}
            ).filter(bool)
        )
        return seconds, EventSpec(at=at, type="identify", user=user, traits=traits)
    properties: dict[str, Any] = {"k": key}
    if kind == TRIGGER:
        properties["plan"] = draw(st.sampled_from(("pro", "basic")))
        properties["n"] = draw(st.integers(0, 3))
    elif kind == REPLY:
        properties["ok"] = draw(st.booleans())
    elif kind == STOP:
        properties["hard"] = draw(st.booleans())
    elif kind == GOAL:
        properties["total"] = draw(st.sampled_from((50, 100, 150)))
    return seconds, EventSpec(at=at, event=kind, user=user, properties=properties)


KINDS = (TRIGGER, REPLY, REPLY, STOP, GOAL, GOAL, NOISE, "identify")


@st.composite
def _episode(
    draw: st.DrawFn, people: list[ProfileSpec], first: bool
) -> list[tuple[int, EventSpec]]:
    """A trigger, and events for the same customer soon after (mostly with the same key)."""
    user = draw(st.sampled_from([p.id for p in people]))
    key = draw(st.sampled_from(KEYS))
    start = 0 if first else draw(_hours()) * 3600
    events = [draw(_event(start, user, TRIGGER, key))]
    for _ in range(draw(st.integers(0, 4))):
        seconds = min(start + draw(st.sampled_from(FOLLOW_UPS)), DAYS * 86400)
        same_key = draw(st.sampled_from((key, key, key, *KEYS)))
        events.append(draw(_event(seconds, user, draw(st.sampled_from(KINDS)), same_key)))
    return events


@st.composite
def event_streams(draw: st.DrawFn, people: list[ProfileSpec]) -> list[tuple[int, EventSpec]]:
    """Events at seconds after the start, in time order (file order among equals): episodes of
    a trigger and its follow-ups, a few events anywhere, some of them twice at the same moment
    and some sent again with the same message id (a retry)."""
    events: list[tuple[int, EventSpec]] = []
    for index in range(draw(st.integers(1, 3))):
        events += draw(_episode(people, first=index == 0))
    for _ in range(draw(st.integers(0, 3))):
        user = draw(st.sampled_from([p.id for p in people]))
        kind = draw(st.sampled_from(KINDS))
        events.append(draw(_event(draw(_hours()) * 3600, user, kind, draw(st.sampled_from(KEYS)))))
    if draw(st.booleans()):  # the same moment twice
        seconds, spec = draw(st.sampled_from(events))
        events.append((seconds, spec.model_copy()))
    if draw(st.booleans()):  # a retried delivery: the same message id again, later
        index = draw(st.integers(0, len(events) - 1))
        seconds, spec = events[index]
        if spec.type == "track":
            retried = spec.model_copy(update={"message_id": f"retried-{index}"})
            events[index] = (seconds, retried)
            again = seconds + draw(st.sampled_from((0, 3600)))
            events.append((again, retried.model_copy(update={"at": offset_text(again)})))
    ordered = sorted(events, key=lambda item: item[0])  # stable: file order among equals
    return _one_trigger_a_moment(ordered)


def _one_trigger_a_moment(events: list[tuple[int, EventSpec]]) -> list[tuple[int, EventSpec]]:
    """Leave out a customer's trigger at a moment where another message of theirs came before
    it (a second trigger, or an event that may end the run: a reply its ``wait_for`` ends on,
    a goal, an exit). Whether the trigger finds the run still going — signalled — or ended —
    refused by ``reentry`` — depends, on the time-skipping server, on real time: how fast the
    server worked through the earlier message (docs/simulate.md, "Fast and exact"). The fast
    simulator routes all of a moment's events before any run takes them. A retry of the same
    message is kept: ingestion drops it as a duplicate on both engines."""
    earlier: dict[tuple[int, str | None], list[str | None]] = {}  # (moment, customer) → ids
    kept = []
    for seconds, spec in events:
        before = earlier.setdefault((seconds, spec.user), [])
        if spec.event == TRIGGER and any(
            spec.message_id is None or other != spec.message_id for other in before
        ):
            continue  # another message came first (one without an id is a message of its own)
        before.append(spec.message_id)
        kept.append((seconds, spec))
    return kept


@dataclass
class GeneratedCase:
    """One drawn example: the journeys' texts and a scenario over them."""

    texts: list[str]
    scenario: Scenario

    def __repr__(self) -> str:
        return f"GeneratedCase({len(self.texts)} journeys, {len(self.scenario.events)} events)"

    def describe(self) -> str:
        """What to paste into a bug report: the journeys and the events, as files."""
        events = [
            {k: v for k, v in spec.model_dump(exclude_defaults=True).items()} | {"at": spec.at}
            for _, spec in self.scenario.events
        ]
        people = [p.model_dump(exclude_none=True) for p in self.scenario.customers]
        return "\n---\n".join(
            [
                *self.texts,
                f"# start: {self.scenario.start.isoformat()}\n"
                + yaml.safe_dump({"customers": people, "events": events}, sort_keys=False),
            ]
        )


@st.composite
def generated_cases(draw: st.DrawFn, context: ProjectContext) -> GeneratedCase:
    """One or two generated journeys, customers and their events, as a scenario."""
    ids = ["generated"] if draw(st.integers(0, 3)) else ["generated", "second"]
    texts = [draw(journey_texts(journey_id)) for journey_id in ids]
    plans = []
    for text in texts:
        plan, problems = compile_journey(text, context)
        assert plan is not None, "\n".join([text, *(p.format() for p in problems)])
        plans.append(plan)
    people = draw(customers())
    start = draw(st.sampled_from(STARTS))
    stream = draw(event_streams(people))
    return GeneratedCase(
        texts,
        Scenario(
            plans=plans,
            customers=people,
            events=[(start + timedelta(seconds=s), spec) for s, spec in stream],
            start=start,
            until=HORIZON,
        ),
    )
