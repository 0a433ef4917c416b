"""What ``touchpoint preview``, ``send-test``, ``messages`` and ``outbox`` do."""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.messages import OutgoingEmail, RenderedMessage
from activities.rendering import Renderer
from config.errors import UserError
from config.project import ProjectConfig
from language.validator import require_valid
from store.database import connect
from store.ledger import Delivery, Ledger
from workflows.models import Profile, SendRequest, customer_hash
from workflows.plan import Plan, SendNode


class PreviewError(UserError):
    """A user mistake: unknown journey or step, a file that cannot be read."""


@dataclass(frozen=True)
class Preview:
    request: SendRequest
    message: RenderedMessage


def _project(root: Path) -> tuple[dict[str, Plan], ProjectConfig]:
    report = require_valid(root)
    return report.plans, report.config


def _data_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise PreviewError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise PreviewError(f"{path}: expected key: value lines")
    return data


def build_preview(
    root: Path,
    journey_id: str,
    step_id: str,
    profile_file: Path | None,
    locale: str | None = None,
    lookups_file: Path | None = None,
) -> Preview:
    """Render one send step for a sample customer, exactly as the worker would."""
    plans, config = _project(root)
    plan = plans.get(journey_id)
    if plan is None:
        raise PreviewError(f"no journey {journey_id!r}; journeys: {', '.join(sorted(plans))}")
    node = plan.nodes.get(step_id)
    if not isinstance(node, SendNode):
        steps = ", ".join(n.id for n in plan.nodes.values() if isinstance(n, SendNode))
        raise PreviewError(f"{journey_id} has no send step {step_id!r}; send steps: {steps}")
    data = _data_file(profile_file)
    context: dict[str, Any] = {key: data.pop(key, {}) for key in ("event", "events", "vars")}
    try:
        profile = Profile.model_validate({"id": "preview-customer", **data})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the customer"
        raise PreviewError(f"{profile_file}: {where}: {first['msg']}") from None
    if locale:
        profile = profile.model_copy(update={"locale": locale})
    context["lookups"] = _data_file(lookups_file)
    context["now"] = datetime.now(UTC).isoformat()
    request = SendRequest(
        message_id=f"preview-{uuid.uuid4().hex[:12]}",
        journey_id=plan.journey_id,
        journey_version=plan.version,
        category=plan.category,
        step_id=node.id,
        channel=node.channel,
        template=node.template,
        destination=node.destination,
        customer_id=profile.id,
        profile=profile,
        context=context,
    )
    renderer = Renderer.for_project(root, config, {p.journey_id: p.name for p in plans.values()})
    unsubscribe = f"{config.email.unsubscribe_url.rstrip('/')}/PREVIEW-TOKEN"
    try:
        message = renderer.render(
            request, unsubscribe_url=unsubscribe if plan.category == "marketing" else None
        )
    except ApplicationError as error:  # the template cannot render for this sample
        raise PreviewError(f"{_at_file_line(error.message)} {SAMPLE_HINT}") from None
    except Exception as error:  # whatever else a template can make rendering raise
        raise PreviewError(
            f"templates/{node.template}/: cannot render: {type(error).__name__}: {error} "
            + SAMPLE_HINT
        ) from None
    return Preview(request, message)


SAMPLE_HINT = "(sample data: --profile, --lookups)"
_LINE = re.compile(r"^(?P<file>\S+) line (?P<line>\d+)(?P<rest>[: ].*)$", re.DOTALL)


def _at_file_line(message: str) -> str:
    """A render error as ``templates/x/en.html:4: …`` (the renderer says "… line 4")."""
    found = _LINE.match(message)
    if found is None:
        return message
    return f"{found['file']}:{found['line']}{found['rest']}"


async def send_test(root: Path, preview: Preview, to: str) -> str | None:
    """Send one rendered email through the configured provider, marked as a test."""
    from activities.email.sender import email_provider

    _, config = _project(root)
    if preview.request.channel != "email":
        raise PreviewError("send-test sends email steps; preview shows the others")
    sender = config.defaults.sender
    if sender is None:
        raise PreviewError("set defaults.sender in touchpoint.yaml")
    provider = email_provider(config, root, os.environ)
    email = OutgoingEmail(
        message_id=preview.request.message_id,
        to=to,
        from_email=sender.email,
        from_name=sender.name,
        subject=preview.message.subject or "",
        html=preview.message.html,
        text=preview.message.text,
        test=True,
        marketing=preview.request.category == "marketing",
        custom_args={"touchpoint_message_id": preview.request.message_id, "test": "true"},
    )
    return await provider.send(email)


def ledger_rows(
    root: Path, customer: str | None, journey: str | None, limit: int
) -> list[Delivery]:
    _, config = _project(root)
    url = os.environ.get("TOUCHPOINT_DATABASE_URL", config.database_url)
    ledger = Ledger(connect(url))
    return ledger.list(customer_hash(customer) if customer else None, journey, limit)


def outbox_path(root: Path) -> Path:
    _, config = _project(root)
    return root / config.email.maildir.path


def as_json(preview: Preview) -> str:
    message = preview.message
    return json.dumps(
        {
            "subject": message.subject,
            "locale": message.locale,
            "text": message.text,
            "data": message.data,
        },
        ensure_ascii=False,
        indent=2,
    )
