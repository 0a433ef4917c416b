"""Compile a schema-valid journey into a plan, checking everything the schema cannot.

The checks here are about meaning: step ids and jumps, reachability, loops that never wait,
split percentages, expressions, templates, destinations, connections and key matching. Each
returns a problem positioned on the YAML that caused it; only a journey with none compiles.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import nodes

from config.project import KNOWN_SECRET_SHAPES, ProjectConfig
from language import authoring as a
from language.analysis import DataRead, data_reads, event_properties
from language.expressions import (
    AUDIENCE_NAMES,
    ENTRY_NAMES,
    EVENT_NAMES,
    MATCH_NAMES,
    STEP_NAMES,
    ExpressionIssue,
    check_expression,
    check_template_text,
    expression_environment,
    parse_expression,
)
from language.policies import SendSettings, check_policies, send_policies
from language.problems import Path, Problem, did_you_mean, suggestion
from language.schedules import parse_every, parse_rate
from language.templates import TemplateCatalog, TemplateRead
from language.yamlsource import SourceMap
from workflows import plan as p
from workflows.channels import CHANNELS
from workflows.durations import parse_duration, parse_offset
from workflows.timing import moment_from

WAITING_KINDS = (a.WaitStep, a.WaitUntilStep, a.WaitForStep)


@dataclass
class ProjectContext:
    """What a journey may refer to: the project config and the templates."""

    config: ProjectConfig = field(default_factory=ProjectConfig)
    templates: TemplateCatalog | None = None

    @property
    def default_locale(self) -> str:
        return self.config.defaults.locale


_FIXED = (nodes.Output, nodes.Const, nodes.Concat, nodes.Add, nodes.Sub, nodes.Neg)
"""What a fixed date expression may be built of (validation evaluates it)."""
RUN_DATA = ("events", "vars", "lookups")
"""The names whose keys steps add as a run goes: a wait_for's event, set, lookup."""
_WHAT_ADDS = {
    "events": "the events of wait_for steps, by step id",
    "vars": "the values set steps store",
    "lookups": "the answers of lookup steps, by save_as",
}


@dataclass
class _Step:
    index: int
    id: str
    model: a.AnyStep

    @property
    def path(self) -> Path:
        return ("steps", self.index)


def compile_journey(
    journey: a.Journey,
    source: SourceMap,
    context: ProjectContext,
    raw: Any = None,
    *,
    partial: bool = False,
) -> tuple[p.Plan | None, list[Problem]]:
    """The plan for ``journey`` and no problems, or ``None`` and every problem found.
    ``partial``: parts of the journey are stand-ins for what the schema rejected
    (:mod:`language.repair`); the checks that need the whole journey are left out."""
    compiler = _Compiler(journey, source, context, partial)
    problems = compiler.check()
    if raw is not None:
        problems.extend(_inline_secrets(raw, (), source))
    if problems or partial:
        return None, problems
    return compiler.plan(), []


class _Compiler:
    def __init__(
        self,
        journey: a.Journey,
        source: SourceMap,
        context: ProjectContext,
        partial: bool = False,
    ) -> None:
        self.journey = journey
        self.source = source
        self.context = context
        self.partial = partial  # parts were stood in for (schema errors): no data-flow checks
        self.problems: list[Problem] = []
        self.steps = self._number_steps()
        self.by_id = {step.id: step for step in self.steps}
        self._incoming: dict[str, set[str]] | None = None
        self._before: dict[str, dict[str, set[str]]] = {}

    # --- the checks ----------------------------------------------------------------------

    def check(self) -> list[Problem]:
        self._check_ids()
        self._check_targets()
        if not self.problems and not self.partial:  # the graph checks need every jump
            self._check_reachable()
            self._check_loops()
        self._check_trigger()
        self._check_entry_and_listeners()
        for step in self.steps:
            self._check_step(step)
        self._check_expressions()
        self._check_policies()
        return self.problems

    def _problem(
        self, path: Path, message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        self.problems.append(self.source.problem(path, message, hint, key=key))

    def _check_policies(self) -> None:
        sends = [
            SendSettings(step.path, step.model.topic, step.model.policies)
            for step in self.steps
            if isinstance(step.model, a.SendStep)
        ]
        j = self.journey
        check_policies(j.category, j.topic, j.policies, sends, self.context.config, self._problem)

    def _number_steps(self) -> list[_Step]:
        taken = {s.id for s in self.journey.steps if s.id}
        steps = []
        for index, model in enumerate(self.journey.steps):
            step_id = model.id or _generated_id(model, index, taken)
            steps.append(_Step(index, step_id, model))
        return steps

    def _check_ids(self) -> None:
        first: dict[str, _Step] = {}
        for step in self.steps:
            if step.model.id is None:
                continue
            if step.id == a.END:
                self._problem(
                    (*step.path, "id"),
                    '"end" is reserved for the end of the journey',
                    "choose another id, e.g. finish",
                )
            elif step.id in first:
                line = self.source.locate((*first[step.id].path, "id")).line
                self._problem(
                    (*step.path, "id"),
                    f'duplicate step id "{step.id}", first on line {line}',
                    "give each step its own id",
                )
            else:
                first[step.id] = step

    def _jumps(self, step: _Step) -> Iterator[tuple[Path, str | None]]:
        """``(path of the field, target)`` for every explicit jump of ``step``."""
        m = step.model
        if isinstance(m, a.GotoStep):
            yield (*step.path, "goto"), m.goto
        elif isinstance(m, a.WaitForStep):
            yield (*step.path, "on_event"), m.on_event
            yield (*step.path, "on_timeout"), m.on_timeout
        elif isinstance(m, a.BranchStep):
            for i, case in enumerate(m.branch):
                yield (*step.path, "branch", i, "goto"), case.goto
            yield (*step.path, "else"), m.else_
        elif isinstance(m, a.SplitStep):
            for i, path in enumerate(m.split):
                yield (*step.path, "split", i, "goto"), path.goto

    def _check_targets(self) -> None:
        for step in self.steps:
            for path, target in self._jumps(step):
                if target is None or target == a.END or target in self.by_id:
                    continue
                known = [s.id for s in self.steps if s.model.id]
                self._problem(
                    path,
                    f'unknown step "{target}"{suggestion(target, known)}',
                    "jump to a step's id, or to end",
                )

    def _edges(self, step: _Step) -> list[str]:
        """Ids of the steps ``step`` may go to next (``end`` excluded)."""
        nxt = self._next_id(step.index)
        m = step.model
        if isinstance(m, a.EndStep):
            targets: list[str | None] = []
        elif isinstance(m, a.GotoStep):
            targets = [m.goto]
        elif isinstance(m, a.WaitForStep):
            targets = [m.on_event or nxt, m.on_timeout or nxt]
        elif isinstance(m, a.BranchStep):
            targets = [*(c.goto for c in m.branch), m.else_ or nxt]
        elif isinstance(m, a.SplitStep):
            targets = [*(path.goto or nxt for path in m.split)]
        else:
            targets = [nxt]
        return [t for t in targets if t and t != a.END]

    def _next_id(self, index: int) -> str:
        return self.steps[index + 1].id if index + 1 < len(self.steps) else a.END

    def _check_reachable(self) -> None:
        seen: set[str] = set()
        todo = [self.steps[0].id]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self._edges(self.by_id[current]))
        for step in self.steps:
            if step.id not in seen:
                self._problem(
                    step.path,
                    f'step "{step.id}" can never be reached',
                    "give it an id and jump to it, or remove it",
                )

    def _check_loops(self) -> None:
        """A cycle through steps none of which waits would run forever: find each one."""
        moving = {s.id for s in self.steps if not isinstance(s.model, WAITING_KINDS)}
        graph = {i: [t for t in self._edges(self.by_id[i]) if t in moving] for i in moving}
        for component in _strongly_connected(graph):
            cyclic = len(component) > 1 or component[0] in graph[component[0]]
            if not cyclic:
                continue
            members = sorted((self.by_id[i] for i in component), key=lambda s: s.index)
            closing = max(members, key=lambda s: s.index)  # the step that jumps back
            jump = next(
                (path for path, target in self._jumps(closing) if target in component), closing.path
            )
            route = " → ".join(s.id for s in members)
            self._problem(
                jump,
                f"this loop never waits ({route} → {members[0].id}) and would repeat forever",
                "add a wait, wait_until or wait_for step inside the loop",
            )

    def _check_trigger(self) -> None:
        """An event or a schedule; a schedule's settings that fit together; nothing of an
        event trigger on a schedule (there is no event to read)."""
        trigger = self.journey.trigger
        if trigger.date is not None:
            self._check_date_trigger(trigger.date)
        if (
            trigger.event is None
            and trigger.schedule is None
            and trigger.segment is None
            and trigger.date is None
        ):
            self._problem(
                ("trigger",),
                'a trigger needs "event" (a shop event starts each run), "schedule" '
                '(the journey goes out to an audience) or "segment" (a customer enters when '
                "they start matching a condition)",
                "e.g. trigger: {event: Newsletter Subscribed}, or schedule: {every: monday "
                "09:00} with audience: <condition over profile>, or segment: <condition "
                "over profile>",
            )
        if trigger.segment is not None:
            self._check_segment_trigger()
        from_profile = trigger.date is not None and trigger.date.profile is not None
        if trigger.audience is not None and trigger.schedule is None and not from_profile:
            self._problem(
                ("trigger", "audience"),
                '"audience" goes with "schedule": it says who a scheduled journey reaches',
                "for an event-triggered journey, put a condition over the profile in entry.if",
                key=True,
            )
        schedule = trigger.schedule
        if schedule is None:
            return
        if trigger.event is not None:
            self._problem(
                ("trigger", "schedule"),
                'a trigger has either "event" or "schedule", not both',
                "a scheduled journey starts from the calendar: remove event (or schedule)",
                key=True,
            )
        for name, value in (("if", trigger.if_), ("key", trigger.key)):
            if value is not None:
                self._problem(
                    ("trigger", name),
                    f"trigger.{name} reads the triggering event, and a scheduled journey has none",
                    "say who enters with audience: (a condition over profile)"
                    if name == "if"
                    else "a scheduled journey has one run per customer and occurrence: remove key",
                    key=True,
                )
        where: Path = ("trigger", "schedule")
        if schedule.every is None and schedule.cron is None:
            self._problem(
                where,
                'a schedule needs "every" or "cron"',
                'e.g. every: monday 09:00, or cron: "0 9 * * MON"',
            )
        elif schedule.every is not None and schedule.cron is not None:
            self._problem(
                (*where, "cron"),
                'a schedule has either "every" or "cron", not both',
                "keep the one that says it best",
                key=True,
            )
        start, end = schedule.start, schedule.end
        if start is not None and end is not None and _moment(end) <= _moment(start):
            self._problem(
                (*where, "end"),
                f"the schedule ends ({end.isoformat()}) before it starts ({start.isoformat()})",
                "end must be after start; check the year and the month",
            )

    def _check_date_trigger(self, spec: a.DateTrigger) -> None:
        """A date from the profile (started by the calendar) or from the trigger event (the
        run waits for it); whole-day offsets; nothing of a schedule."""
        trigger, where = self.journey.trigger, ("trigger", "date")
        if trigger.schedule is not None:
            self._problem(
                (*where,),
                'a trigger has either "date" or "schedule", not both',
                "a date journey fires for each customer on their own date: remove schedule",
                key=True,
            )
        if trigger.segment is not None:
            self._problem(
                (*where,),
                'a trigger has either "date" or "segment", not both',
                "a date journey fires on each customer's date, a segment journey when they "
                "start matching: keep one of them",
                key=True,
            )
        if (spec.profile is None) == (spec.property is None):
            self._problem(
                where,
                'a date trigger reads "profile" (a date in the profile) or "property" (a date '
                "in the trigger event), exactly one of them",
                'e.g. date: {profile: traits.birthday, every: year, at: "09:00"}, or event: '
                "Laptop Delivered with date: {property: warranty_ends, offset: -30d, at: "
                '"09:00"}',
            )
        if spec.offset is not None and parse_offset(spec.offset) % 86_400:
            self._problem(
                (*where, "offset"),
                f'the offset of a date is whole days, got "{spec.offset}"',
                'the time of day is "at": write e.g. offset: -30d with at: "09:00"',
            )
        if spec.profile is not None:
            if trigger.event is not None:
                self._problem(
                    (*where, "profile"),
                    "a date in the profile starts runs from the calendar: it does not go with "
                    '"event"',
                    "remove event, or read the date from the event with property: <name>",
                    key=True,
                )
            for name, value in (("if", trigger.if_), ("key", trigger.key)):
                if value is not None:
                    self._problem(
                        ("trigger", name),
                        f"trigger.{name} reads the triggering event, and a date journey from "
                        "the profile has none",
                        "say who enters with audience: (a condition over profile)"
                        if name == "if"
                        else "a date journey has one run per customer and date: remove key",
                        key=True,
                    )
            if spec.every is None:
                self._problem(
                    where,
                    'a date in the profile needs "every": year (a birthday, an anniversary) or '
                    "once (a one-off date)",
                    "e.g. every: year",
                )
        elif spec.property is not None:
            if trigger.event is None:
                self._problem(
                    (*where, "property"),
                    'a date from an event property needs the "event" that carries it',
                    "e.g. event: Laptop Delivered",
                    key=True,
                )
            if spec.every == "year":
                self._problem(
                    (*where, "every"),
                    "a date from an event is one date: every: year goes with a date in the profile",
                    "remove every (or write every: once)",
                )

    def _check_segment_trigger(self) -> None:
        """A segment is the whole trigger: no event, schedule, or what reads an event."""
        trigger = self.journey.trigger
        for name, present, hint in (
            (
                "event",
                trigger.event,
                "a segment journey starts when an identify makes the "
                "condition true: remove event (or segment)",
            ),
            (
                "schedule",
                trigger.schedule,
                "a scheduled journey goes out to its audience; a "
                "segment journey starts when a customer starts matching: keep one of them",
            ),
            ("if", trigger.if_, "put the whole condition in segment (it reads profile)"),
            ("key", trigger.key, "a segment journey has one run per crossing: remove key"),
        ):
            if present is not None:
                self._problem(
                    ("trigger", name),
                    f'a segment trigger does not go with "{name}"'
                    + (": there is no triggering event to read" if name in ("if", "key") else ""),
                    hint,
                    key=True,
                )

    def _check_entry_and_listeners(self) -> None:
        entry = self.journey.entry
        if entry.after and entry.reentry != "one_at_a_time":
            self._problem(
                ("entry", "after"),
                f'"after" is a cooldown between runs and does not go '
                f'with reentry "{entry.reentry}"',
                'remove "after", or use reentry: one_at_a_time',
            )
        listeners: list[tuple[Path, str | None]] = [
            (("exit_when", i), rule.key) for i, rule in enumerate(self.journey.exit_when)
        ]
        if self.journey.goal:
            listeners.append((("goal",), self.journey.goal.key))
        listeners += [
            (s.path, s.model.key) for s in self.steps if isinstance(s.model, a.WaitForStep)
        ]
        if self.journey.trigger.key is None:
            for path, key in listeners:
                if key is not None:
                    self._problem(
                        (*path, "key"),
                        "there is no trigger key to match this key against",
                        "add trigger.key (e.g. event.properties.order_id) for one run "
                        "per key, or remove this key",
                    )

    def _check_step(self, step: _Step) -> None:
        m = step.model
        if isinstance(m, a.SendStep):
            self._check_send(step, m)
        elif isinstance(m, a.SplitStep):
            total = sum(path.percent for path in m.split)
            if total != 100:
                self._problem(
                    (*step.path, "split"),
                    f"split percentages add up to {total}, not 100",
                    "adjust the percent values so they total 100",
                )
            names: set[str] = set()
            for i, path in enumerate(m.split):
                if path.name in names:
                    self._problem(
                        (*step.path, "split", i, "name"),
                        f'duplicate path name "{path.name}"',
                        "give each path its own name",
                    )
                names.add(path.name)
        elif isinstance(m, a.WaitUntilStep):
            self._check_wait_until(step, m.wait_until)
        elif isinstance(m, a.LookupStep) and m.lookup not in self.context.config.connections:
            known = self.context.config.connections
            self._problem(
                (*step.path, "lookup"),
                f'unknown connection "{m.lookup}"{suggestion(m.lookup, known)}',
                "define it under connections: in touchpoint.yaml",
            )

    def _check_send(self, step: _Step, m: a.SendStep) -> None:
        path = step.path
        channel = CHANNELS[m.send]
        if channel.recipient != "destination":
            if m.to is not None:
                whose = "address" if channel.recipient == "email" else "number"
                self._problem(
                    (*path, "to"),
                    f"{m.send} goes to the customer's own {whose}; "
                    '"to" names a webhook or chat destination',
                    'remove "to"',
                )
        else:
            destinations = self.context.config.destinations
            if m.to is None:
                self._problem(
                    path,
                    f'a {m.send} send needs "to": a destination from touchpoint.yaml',
                    f"add to: <name>; known: {', '.join(destinations) or 'none yet'}",
                )
            elif m.to not in destinations:
                self._problem(
                    (*path, "to"),
                    f'unknown destination "{m.to}"{suggestion(m.to, destinations)}',
                    "define it under destinations: in touchpoint.yaml",
                )
            elif (kind := destinations[m.to].type) not in channel.destination_types:
                self._problem(
                    (*path, "to"),
                    f'destination "{m.to}" is a {kind} destination, not a {m.send} one',
                    f"use a destination of type {' or '.join(sorted(channel.destination_types))}",
                )
        catalog = self.context.templates
        if catalog is not None:
            issue = catalog.check_reference(m.template, m.send, self.context.default_locale)
            if issue:
                self._problem((*path, "template"), *issue)
            self.problems += catalog.problems.get(m.template, [])  # its own files' problems
            if not self.partial:
                for place in catalog.data_reads(m.template):
                    self._check_template_read(step, m, place)

    # --- what templates and expressions read, where they read it ------------------------

    def _check_template_read(self, step: _Step, m: a.SendStep, place: TemplateRead) -> None:
        """Does the run give template ``place`` the data it reads when ``step`` sends it?"""
        read = place.read
        if read.optional:
            return
        line = self.source.locate(step.path).line
        sender = f'step "{step.id}" ({self.source.file}:{line})'
        if read.root == "unsubscribe_url":
            form = CHANNELS[m.send].form
            if form == "email" and self.journey.category == "marketing":
                return
            what = f"a {self.journey.category} email" if form == "email" else f"a {m.send} message"
            self.problems.append(
                place.problem(
                    f"unsubscribe_url is given to marketing emails only, and {sender} "
                    f"sends this as {what}",
                    "show the link only where there is one: "
                    "{% if unsubscribe_url is defined %}…{% endif %}",
                )
            )
            return
        issue = self._run_data_issue(read, step, set())
        if issue is not None:
            what, near, hint = issue
            self.problems.append(place.problem(f"{what} when {sender} sends this{near}", hint))

    def _run_data_issue(
        self, read: DataRead, step: _Step, also: set[str]
    ) -> tuple[str, str, str] | None:
        """``(what, did you mean, hint)`` when ``events.x``, ``vars.x`` or ``lookups.x`` is
        filled in on no path before ``step`` (``also``: ``vars`` the step itself has set)."""
        if read.root not in RUN_DATA or read.key is None or read.optional:
            return None
        before = self._added_before(step)[read.root] | (also if read.root == "vars" else set())
        if read.key in before:
            return None
        optional = f"{read.text} | default(…)"
        later = self._first_adding(read.root, read.key)
        if later is not None:
            return (
                f'"{read.text}" is not there yet',
                "",
                f'step "{later}" fills it in, after "{step.id}": move that step before it, '
                f"or make it optional: {optional}",
            )
        known = ", ".join(sorted(before)) or "nothing yet"
        return (
            f'unknown "{read.text}"',
            _suggest(read.root, read.key, self._added_anywhere()[read.root]),
            f'{read.root} holds {_WHAT_ADDS[read.root]}; before "{step.id}": {known}',
        )

    def _first_adding(self, root: str, key: str) -> str | None:
        """The first step that fills in ``root.key``, if any does."""
        return next((s.id for s in self.steps if key in self._added({s.id})[root]), None)

    def _added_before(self, step: _Step) -> dict[str, set[str]]:
        """What of ``events``, ``vars`` and ``lookups`` some path fills in before ``step``."""
        if step.id not in self._before:
            self._before[step.id] = self._added(self._steps_before(step.id))
        return self._before[step.id]

    def _added_anywhere(self) -> dict[str, set[str]]:
        return self._added({s.id for s in self.steps})

    def _added(self, ids: set[str]) -> dict[str, set[str]]:
        added: dict[str, set[str]] = {root: set() for root in RUN_DATA}
        for step_id in ids:
            m = self.by_id[step_id].model
            if isinstance(m, a.WaitForStep):
                added["events"].add(step_id)
            elif isinstance(m, a.SetStep):
                added["vars"] |= set(m.set)
            elif isinstance(m, a.LookupStep):
                added["lookups"].add(m.save_as)
        return added

    def _steps_before(self, step_id: str) -> set[str]:
        """Ids of the steps that can run before ``step_id`` (itself too, inside a loop)."""
        if self._incoming is None:
            self._incoming = {s.id: set() for s in self.steps}
            for s in self.steps:
                for target in self._edges(s):
                    if target in self._incoming:
                        self._incoming[target].add(s.id)
        seen: set[str] = set()
        todo = list(self._incoming.get(step_id, ()))
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self._incoming[current])
        return seen

    def _check_wait_until(self, step: _Step, spec: a.WaitUntilSpec) -> None:
        path = (*step.path, "wait_until")
        if spec.time is None and spec.date is None:
            self._problem(
                path,
                'wait_until needs "time" (a time of day) or "date" (an expression)',
                'e.g. time: "09:00" with days: [mon, tue, wed, thu, fri]',
            )
        if spec.date is not None and spec.days is not None:
            self._problem(
                (*path, "days"),
                '"days" goes with "time", not with "date"',
                'remove "days", or wait for a time of day instead of a date',
            )
        if spec.offset is not None and spec.date is None:
            self._problem(
                (*path, "offset"),
                '"offset" moves a "date"; there is no date here',
                'add "date" (e.g. date: event.properties.appointment_at), or remove "offset"',
            )
        if spec.date is not None:
            self._check_fixed_date((*path, "date"), spec.date)

    def _check_fixed_date(self, path: Path, source: str) -> None:
        """A ``date`` that reads no data is the same every run: it must be a readable date.
        (``date: 2027-03-01`` without quotes is arithmetic: 2027 − 3 − 1.)"""
        if check_expression(source, STEP_NAMES) is not None:
            return  # reported as an expression
        tree = parse_expression(source)
        if not all(isinstance(node, _FIXED) for node in tree.find_all(nodes.Node)):
            return  # it reads data (or does more than join text and numbers): the run tells
        try:
            value = expression_environment().compile_expression(source)()
        except Exception:
            return
        try:
            moment_from(value, ZoneInfo("UTC"))
        except ValueError as error:
            hint = (
                "write it as YYYY-MM-DD (or an ISO time), and check the day and the month"
                if isinstance(value, str)
                else "a fixed date is text in quotes inside quotes, e.g. date: \"'2027-03-28'\""
            )
            self._problem(path, f"the date cannot be read: {error}", hint)

    def _check_expressions(self) -> None:
        for path, source, names in self._expressions():
            issue = check_expression(source, names)
            if issue:
                self._expression_problem(path, issue)
            elif names == STEP_NAMES and not self.partial:
                self._check_step_reads(path, source, parse_expression(source))
        for step in self.steps:
            if isinstance(step.model, a.LookupStep):
                for path, text in _strings(
                    (*step.path,),
                    {"path": step.model.path, "query": step.model.query, "body": step.model.body},
                ):
                    issue = check_template_text(text, STEP_NAMES)
                    if issue:
                        self._expression_problem(path, issue)
                    elif not self.partial:
                        self._check_step_reads(path, text, expression_environment().parse(text))

    def _check_step_reads(self, path: Path, source: str, tree: Any) -> None:
        """``events.x``, ``vars.x`` and ``lookups.x`` read by a step must be filled in on some
        path before it (in a set step, by an earlier name of the same step too)."""
        step = self.steps[int(path[1])]
        also: set[str] = set()
        if isinstance(step.model, a.SetStep):
            names = list(step.model.set)
            also = set(names[: names.index(str(path[3]))])
        for read in data_reads(tree, RUN_DATA):
            issue = self._run_data_issue(read, step, also)
            if issue is not None:
                what, near, hint = issue
                found = source.find(read.key or read.root)
                self._expression_problem(path, ExpressionIssue(what + near, max(found, 0), hint))
                return

    def _expression_problem(self, path: Path, issue: ExpressionIssue) -> None:
        pos = self.source.expression_column(path, issue.offset)
        base = self.source.problem(path, issue.message, issue.hint)
        self.problems.append(
            Problem(base.file, pos.line, pos.column, base.path, base.message, base.hint)
        )

    def _expressions(self) -> Iterator[tuple[Path, str, tuple[str, ...]]]:
        j = self.journey
        yield from _optional(("trigger", "audience"), j.trigger.audience, AUDIENCE_NAMES)
        yield from _optional(("trigger", "segment"), j.trigger.segment, AUDIENCE_NAMES)
        yield from _optional(("trigger", "if"), j.trigger.if_, EVENT_NAMES)
        yield from _optional(("trigger", "key"), j.trigger.key, EVENT_NAMES)
        if j.trigger.date is not None and j.trigger.date.property is not None:
            yield ("trigger", "date", "property"), _date_property(j.trigger.date), EVENT_NAMES
        yield from _optional(("entry", "if"), j.entry.if_, ENTRY_NAMES)
        matches: list[tuple[Path, a.ExitRule | a.Goal | a.WaitForStep]] = [
            (("exit_when", i), rule) for i, rule in enumerate(j.exit_when)
        ]
        if j.goal:
            matches.append((("goal",), j.goal))
        for step in self.steps:
            m = step.model
            if isinstance(m, a.WaitForStep):
                matches.append((step.path, m))
            elif isinstance(m, a.BranchStep):
                for i, case in enumerate(m.branch):
                    yield (*step.path, "branch", i, "if"), case.if_, STEP_NAMES
            elif isinstance(m, a.SetStep):
                for name, expression in m.set.items():
                    yield (*step.path, "set", name), expression, STEP_NAMES
            elif isinstance(m, a.WaitUntilStep):
                yield from _optional(
                    (*step.path, "wait_until", "date"), m.wait_until.date, STEP_NAMES
                )
        for path, rule in matches:
            yield from _optional((*path, "if"), rule.if_, MATCH_NAMES)
            yield from _optional((*path, "key"), rule.key, EVENT_NAMES)

    # --- the plan ------------------------------------------------------------------------

    def plan(self) -> p.Plan:
        j = self.journey
        nodes: dict[str, p.Node] = {}
        for step in self.steps:
            if not isinstance(step.model, a.GotoStep | a.EndStep):  # both are only jumps
                nodes[step.id] = self._node(step)
        nodes[p.END] = p.EndNode(id=p.END)
        start = self._resolve(self.steps[0].id)
        dated = j.trigger.date
        if dated is not None and dated.property is not None:  # the run waits for the date
            nodes[p.DATE_STEP] = p.WaitUntilNode(
                id=p.DATE_STEP,
                date=_date_property(dated),
                offset_seconds=parse_offset(dated.offset) if dated.offset else 0,
                time=dated.at,
                if_past="skip",
                next=start,
            )
            start = p.DATE_STEP
        plan = p.Plan(
            journey_id=j.id,
            name=j.name,
            description=j.description,
            category=j.category,
            trigger=p.EventMatch(
                event=j.trigger.event
                or (p.SEGMENT_EVENT if j.trigger.segment else p.BROADCAST_EVENT),
                condition=j.trigger.if_,
                key=j.trigger.key,
            ),
            entry=p.EntryRule(
                policy=j.entry.reentry,
                cooldown_seconds=parse_duration(j.entry.after) if j.entry.after else None,
                condition=j.entry.if_,
            ),
            exits=tuple(
                p.ExitRule(event=r.event, condition=r.if_, key=r.key, reason=r.reason or r.event)
                for r in j.exit_when
            ),
            goal=j.goal
            and p.GoalRule(
                event=j.goal.event,
                condition=j.goal.if_,
                key=j.goal.key,
                within_seconds=parse_duration(j.goal.within) if j.goal.within else None,
            ),
            start=start,
            nodes=nodes,
            topic=j.topic,
            event_properties=self._event_properties(),
            schedule=self._schedule(),
            segment=j.trigger.segment,
            date_entry=self._date_entry(),
        )
        return plan.with_version()

    def _date_entry(self) -> p.DateRule | None:
        trigger = self.journey.trigger
        dated = trigger.date
        if dated is None or dated.profile is None:
            return None
        return p.DateRule(
            path=dated.profile,
            every=dated.every or "once",
            offset_days=parse_offset(dated.offset) // 86_400 if dated.offset else 0,
            time=dated.at,
            timezone=self.context.config.defaults.timezone,
            audience=trigger.audience,
        )

    def _schedule(self) -> p.ScheduleRule | None:
        trigger = self.journey.trigger
        schedule = trigger.schedule
        if schedule is None:
            return None
        weekdays, time = parse_every(schedule.every) if schedule.every else (None, None)
        return p.ScheduleRule(
            cron=schedule.cron,
            weekdays=weekdays,
            time=time,
            timezone=schedule.timezone or self.context.config.defaults.timezone,
            start=schedule.start and schedule.start.isoformat(),
            end=schedule.end and schedule.end.isoformat(),
            audience=trigger.audience,
            starts_per_second=parse_rate(schedule.rate) if schedule.rate else None,
        )

    def _event_properties(self) -> tuple[str, ...] | None:
        """Every event property the journey reads — its expressions, lookups and the templates
        of its sends — so the router hands its runs only those (``None``: any may be read)."""
        found: set[str] = set()
        trees: list[tuple[Any, tuple[str, ...]]] = []
        try:
            trees += [(parse_expression(src), names) for _, src, names in self._expressions()]
            for step in self.steps:
                if isinstance(step.model, a.LookupStep):
                    m = step.model
                    parts = {"path": m.path, "query": m.query, "body": m.body}
                    env = expression_environment()
                    trees += [(env.parse(text), STEP_NAMES) for _, text in _strings((), parts)]
        except Exception:  # an expression that does not parse: reported elsewhere
            return None
        for tree, names in trees:
            read = event_properties(tree, names)
            if read is None:
                return None
            found |= read
        catalog = self.context.templates
        for step in self.steps:
            if isinstance(step.model, a.SendStep):
                read = catalog.event_properties(step.model.template) if catalog else None
                if read is None:
                    return None
                found |= read
        return tuple(sorted(found))

    def _resolve(self, target: str | None, after: int | None = None) -> str:
        """The node a jump lands on: ``None`` means the next step; gotos are followed."""
        if target is None:
            target = self._next_id(after) if after is not None else a.END
        seen: set[str] = set()
        while target != a.END:
            model = self.by_id[target].model
            if isinstance(model, a.EndStep):
                return a.END
            if not isinstance(model, a.GotoStep):
                return target
            if target in seen:  # pragma: no cover - rejected by the loop check
                raise ValueError(f"goto cycle through {target}")
            seen.add(target)
            target = model.goto
        return target

    def _template_reads(self, template: str) -> tuple[str, ...] | None:
        """The run's names a send's template reads, so the run sends it only those (``None``:
        all of them — the template could not be analysed)."""
        catalog = self.context.templates
        roots = catalog.reads(template) if catalog is not None else None
        return None if roots is None else tuple(sorted(roots & set(p.SEND_CONTEXT)))

    def _node(self, step: _Step) -> p.Node:
        m, i = step.model, step.index
        base: dict[str, Any] = {"id": step.id, "stage": m.stage}
        nxt = self._resolve(None, after=i)
        if isinstance(m, a.SendStep):
            return p.SendNode(
                **base,
                channel=m.send,
                template=m.template,
                destination=m.to,
                skip_on_failure=m.skip_on_failure,
                reads=self._template_reads(m.template),
                topic=m.topic or self.journey.topic,
                policies=send_policies(self.journey.policies, m.policies),
                next=nxt,
            )
        if isinstance(m, a.WaitStep):
            return p.WaitNode(**base, seconds=parse_duration(m.wait), next=nxt)
        if isinstance(m, a.WaitUntilStep):
            spec = m.wait_until
            days = tuple(a.WEEKDAYS.index(d) for d in spec.days) if spec.days else tuple(range(7))
            return p.WaitUntilNode(
                **base,
                time=spec.time,
                days=days,
                date=spec.date,
                offset_seconds=parse_offset(spec.offset) if spec.offset else 0,
                next=nxt,
            )
        if isinstance(m, a.WaitForStep):
            return p.WaitForNode(
                **base,
                match=p.EventMatch(event=m.wait_for, condition=m.if_, key=m.key),
                timeout_seconds=parse_duration(m.timeout),
                on_event=self._resolve(m.on_event, i),
                on_timeout=self._resolve(m.on_timeout, i),
            )
        if isinstance(m, a.BranchStep):
            cases = tuple(
                p.BranchCase(condition=c.if_, next=self._resolve(c.goto)) for c in m.branch
            )
            return p.BranchNode(**base, cases=cases, otherwise=self._resolve(m.else_, i))
        if isinstance(m, a.SplitStep):
            paths = tuple(
                p.SplitPath(
                    name=s.name, percent=s.percent, holdout=s.holdout, next=self._resolve(s.goto, i)
                )
                for s in m.split
            )
            return p.SplitNode(**base, paths=paths)
        if isinstance(m, a.LookupStep):
            return p.LookupNode(
                **base,
                connection=m.lookup,
                method=m.method,
                path=m.path,
                query=m.query,
                body=m.body,
                save_as=m.save_as,
                next=nxt,
            )
        assert isinstance(m, a.SetStep), m
        return p.SetNode(**base, assignments=dict(m.set), next=nxt)


def _moment(value: date | datetime) -> datetime:
    """A schedule's start or end as a moment (a date: its midnight, UTC) to compare them."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _suggest(root: str, key: str, candidates: set[str]) -> str:
    """`` did you mean "vars.score"?`` or an empty string."""
    near = did_you_mean(key, candidates)
    return f'; did you mean "{root}.{near}"?' if near else ""


def _generated_id(model: a.AnyStep, index: int, taken: set[str]) -> str:
    kind = a.step_kind(model) or "step"
    candidate = f"{kind.replace('_', '-')}-{index + 1}"
    while candidate in taken:
        candidate += "-auto"
    return candidate


def _date_property(spec: a.DateTrigger) -> str:
    """The expression the run's first wait reads: the date in the trigger event."""
    return f"event.properties.{spec.property}"


def _optional(
    path: Path, source: str | None, names: tuple[str, ...]
) -> Iterator[tuple[Path, str, tuple[str, ...]]]:
    if source is not None:
        yield path, source, names


def _strings(path: Path, value: Any) -> Iterator[tuple[Path, str]]:
    """Every string inside ``value`` with its path (for templated lookup parts)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings((*path, key), item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings((*path, i), item)


def _inline_secrets(raw: Any, path: Path, source: SourceMap) -> Iterator[Problem]:
    """Strings that look like a real secret (API key, token, signing secret)."""
    for string_path, text in _strings(path, raw):
        for what, shape in KNOWN_SECRET_SHAPES:
            if shape.search(text):
                yield source.problem(
                    string_path,
                    f"this looks like {what} written inline",
                    "secrets never go into YAML: put it in an environment "
                    "variable and write ${NAME} in touchpoint.yaml",
                )
                break


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively (journeys can be long)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            edges = graph[node]
            if child < len(edges):
                work.append((node, child + 1))
                target = edges[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components
