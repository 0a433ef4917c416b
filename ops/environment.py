"""The environment a deployment needs, checked before a worker or the API starts.

``touchpoint.yaml`` names secrets by reference (``${CRM_WEBHOOK_SECRET}``). A journey that sends
to a destination, or looks up a connection, needs every variable that destination or connection
references; email through SendGrid needs ``SENDGRID_API_KEY``; marketing email needs
``TOUCHPOINT_UNSUBSCRIBE_SECRET`` (the worker signs the unsubscribe links with it, the API
checks them). A missing one used to show at the first send, as a failed step; now the worker and
the API refuse to start and list every one, and ``touchpoint validate --env`` checks the same in
CI. A deployment that records its sends (``TOUCHPOINT_RECORD_FILE``: tests, demos) delivers
nothing and needs none of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.errors import MissingEnvironment
from config.project import ENV_REFERENCE
from ingestion.sendgrid_events import load_public_key
from ingestion.unsubscribe import MIN_SECRET_BYTES, SECRET_ENV
from language.problems import Path as KeyPath
from language.problems import Problem, format_path
from language.validator import Report, config_source
from language.yamlsource import SourceMap
from workflows.channels import CHANNELS
from workflows.plan import LookupNode, SendNode

SENDGRID_KEY_ENV = "SENDGRID_API_KEY"
WEBHOOK_KEY_ENV = "SENDGRID_WEBHOOK_PUBLIC_KEY"


@dataclass(frozen=True)
class Need:
    """A variable the configuration needs: where it is referenced, and by which journeys."""

    variable: str
    path: KeyPath  # in touchpoint.yaml; () when no setting names it
    why: str  # for people: the setting, or what needs it
    journeys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unmet:
    need: Need
    problem: str  # "is not set", "is empty", …

    def describe(self) -> str:
        return f"{self.need.variable} {self.problem} ({self.need.why})"


def needs(report: Report) -> list[Need]:
    """Every variable the project's journeys need at run time, in a stable order."""
    config = report.config
    users: dict[tuple[str, str], set[str]] = {}  # (section, name) → journeys
    marketing_email: list[str] = []
    channels: dict[str, set[str]] = {}  # channel → journeys sending on it
    for plan in report.plans.values():
        for node in plan.nodes.values():
            if isinstance(node, SendNode) and node.destination is not None:
                users.setdefault(("destinations", node.destination), set()).add(plan.journey_id)
            if isinstance(node, LookupNode):
                users.setdefault(("connections", node.connection), set()).add(plan.journey_id)
            if isinstance(node, SendNode):
                channels.setdefault(node.channel, set()).add(plan.journey_id)
        sends_email = any(
            isinstance(n, SendNode) and n.channel == "email" for n in plan.nodes.values()
        )
        if plan.category == "marketing" and sends_email:
            marketing_email.append(plan.journey_id)
    found: list[Need] = []
    for (section, name), journeys in sorted(users.items()):
        setting = (config.destinations if section == "destinations" else config.connections).get(
            name
        )
        if setting is None:  # the validator reports an unknown name
            continue
        for path, text in _strings(setting.model_dump(), (section, name)):
            for variable in _references(text):
                found.append(Need(variable, path, format_path(path), tuple(sorted(journeys))))
    for name, journeys in sorted(channels.items()):
        for variable in CHANNELS[name].secrets:
            why = f"journeys send {name}: {', '.join(sorted(journeys))}"
            found.append(Need(variable, ("channels", name), why, tuple(sorted(journeys))))
    if config.email.provider == "sendgrid":
        found.append(Need(SENDGRID_KEY_ENV, ("email", "provider"), "email.provider is sendgrid"))
    if marketing_email:
        why = f"it signs the unsubscribe links of marketing email: {', '.join(marketing_email)}"
        found.append(Need(SECRET_ENV, (), why, tuple(marketing_email)))
    return found


def unmet(required: Sequence[Need], environ: Mapping[str, str]) -> list[Unmet]:
    """The needs ``environ`` does not meet, each variable once (at its first reference)."""
    seen: set[str] = set()
    result = []
    for need in required:
        if need.variable in seen:
            continue
        seen.add(need.variable)
        value = environ.get(need.variable)
        if value is None:
            result.append(Unmet(need, "is not set"))
        elif not value.strip():
            result.append(Unmet(need, "is empty"))
        elif need.variable == SECRET_ENV and len(value.encode()) < MIN_SECRET_BYTES:
            result.append(Unmet(need, f"is too short (use at least {MIN_SECRET_BYTES} bytes)"))
    return result


def webhook_key_problem(environ: Mapping[str, str]) -> Unmet | None:
    """SendGrid's verification key is optional for the API; when set, it must parse."""
    value = environ.get(WEBHOOK_KEY_ENV)
    if not value:
        return None
    try:
        load_public_key(value)
    except ValueError as error:
        reason = str(error).removeprefix("SendGrid verification key ")
        return Unmet(Need(WEBHOOK_KEY_ENV, (), "the SendGrid Event Webhook"), reason)
    return None


def require_environment(
    report: Report,
    environ: Mapping[str, str],
    process: str,
    *,
    delivers: bool = True,
    also: Sequence[Unmet] = (),
) -> None:
    """Raise :class:`MissingEnvironment` listing every unmet need (and ``also``) in one line;
    a process that delivers nothing (it records sends) needs nothing but ``also``."""
    problems = [*(unmet(needs(report), environ) if delivers else []), *also]
    if problems:
        raise MissingEnvironment(
            f"{process} cannot start: "
            + "; ".join(problem.describe() for problem in problems)
            + " — set them where it runs (`touchpoint validate --env` checks them)"
        )


def environment_problems(report: Report, root: Path, environ: Mapping[str, str]) -> list[Problem]:
    """The unmet needs as ``touchpoint validate`` problems, located in touchpoint.yaml."""
    source: SourceMap | None = None
    problems = []
    for missing in unmet(needs(report), environ):
        source = source or config_source(root)
        need = missing.need
        hint = "set it where the worker and the API run"
        if need.path and need.journeys:
            hint += f"; used by {', '.join(need.journeys)}"
        message = f"environment variable {need.variable} {missing.problem}"
        if not need.path:
            message += f": {need.why}"
        problems.append(source.problem(need.path, message, hint))
    return problems


def _strings(value: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def _references(text: str) -> list[str]:
    return ENV_REFERENCE.findall(text)
