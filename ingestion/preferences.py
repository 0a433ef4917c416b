"""The page behind a message's unsubscribe link: the customer's topics, and changing them.

``GET /unsubscribe/{token}`` never changes anything. It shows the one-click button of the
link (the message's topic, or all marketing email for a token without one: a POST of
``List-Unsubscribe=One-Click`` to the same URL, RFC 8058) and a form with the project's topics
(``touchpoint.yaml`` ``topics:``), each with the customer's current choice per channel, and a
"leave all" box. The form posts to ``/unsubscribe/{token}/preferences`` — another path, and a
body that must not carry ``List-Unsubscribe`` — so it can never be taken for a one-click
unsubscribe, nor a one-click POST for it. The signed token is the customer's only credential:
what it names is who is changed.

Pages are rendered server-side by Jinja2 with autoescaping on (topic names and descriptions
come from ``touchpoint.yaml``, the customer id from the token: neither is trusted as HTML),
with no script, stylesheet or font from anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from fastapi import Request
from jinja2 import Environment, StrictUndefined

from ingestion.consent import CUSTOMER_CHANNELS, Applied, Change, ConsentView
from store.topic_consent import SUBSCRIBED, UNSUBSCRIBED, Status

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 16 * 1024
MAX_FIELDS = 200
LEAVE_ALL = "leave_all"
MARKER = "preferences"  # the form says what it is: a body without it is refused
VALUES: dict[str, Status] = {"in": SUBSCRIBED, "out": UNSUBSCRIBED}
CHANNEL_NAMES = {"email": "Email", "sms": "Text messages (SMS)"}


class BadForm(Exception):
    """The preferences form cannot be applied: ``status`` and what is wrong (field named)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def field_name(topic: str, channel: str) -> str:
    return f"topic:{topic}:{channel}"


async def read_form(request: Request, view: ConsentView) -> tuple[list[Change], bool]:
    """The changes the submitted form asks for (only where they differ from ``view``) and
    whether it asks to leave everything; :class:`BadForm` for anything else."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM_TYPE:
        raise BadForm(415, f"expected the preferences form as {FORM_TYPE}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise BadForm(413, f"the form is larger than {MAX_FORM_BYTES // 1024} KB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise BadForm(413, f"the form is larger than {MAX_FORM_BYTES // 1024} KB")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise BadForm(400, "the form cannot be read") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise BadForm(400, f"{name}: given twice")
        fields[name] = value
    if "List-Unsubscribe" in fields:
        raise BadForm(400, "List-Unsubscribe: a one-click unsubscribe goes to the link itself")
    if fields.pop(MARKER, None) != "1":
        raise BadForm(400, f"{MARKER}: missing; submit the form on the preferences page")
    leave_all = fields.pop(LEAVE_ALL, "") == "yes"
    known = {field_name(t, c): (t, c) for t in view.topic_names() for c in CUSTOMER_CHANNELS}
    changes: list[Change] = []
    for name, value in fields.items():
        if name not in known:
            raise BadForm(400, f"{name}: not a topic and channel on this page")
        if value not in VALUES:
            raise BadForm(400, f"{name}: expected 'in' or 'out', got {value!r}")
        topic, channel = known[name]
        if view.status(topic, channel) != VALUES[value]:
            changes.append((topic, channel, VALUES[value]))
    return changes, leave_all


_ENV = Environment(autoescape=True, undefined=StrictUndefined)
_STYLE = """<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;
padding:0 1rem;line-height:1.5}fieldset{margin:1rem 0}.note{color:#7a4b00}</style>"""
_PAGE = _ENV.from_string(
    """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Your email preferences</title>"""
    + _STYLE
    + """</head><body>
<h1>Your email preferences</h1>
{% for note in notes %}<p class="note">{{ note }}</p>{% endfor %}
<form method="post" action="{{ one_click }}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe from {{ leaving }}</button></form>
{% if topics %}
<form method="post" action="{{ preferences }}">
<input type="hidden" name="preferences" value="1">
{% for topic in topics %}<fieldset><legend>{{ topic.name }}</legend>
{% if topic.description %}<p>{{ topic.description }}</p>{% endif %}
{% for channel in topic.channels %}<p>{{ channel.label }}:
<label><input type="radio" name="{{ channel.field }}" value="in"
{%- if channel.subscribed %} checked{% endif %}> subscribed</label>
<label><input type="radio" name="{{ channel.field }}" value="out"
{%- if not channel.subscribed %} checked{% endif %}> unsubscribed</label></p>
{% endfor %}</fieldset>
{% endfor %}
<p><label><input type="checkbox" name="leave_all" value="yes">
Leave all: no marketing from us on any channel</label></p>
<button type="submit">Save my choices</button></form>
{% endif %}
<p>Messages about your orders still reach you.</p>
</body></html>"""
)
_DONE = _ENV.from_string(
    """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title>"""
    + _STYLE
    + """</head><body><h1>{{ title }}</h1>
{% for line in lines %}<p>{{ line }}</p>{% endfor %}
{% for note in notes %}<p class="note">{{ note }}</p>{% endfor %}
<p>Messages about your orders still reach you.</p>
{% if back %}<p><a href="{{ back }}">Change your choices</a></p>{% endif %}
</body></html>"""
)
_PROBLEM = _ENV.from_string(
    """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title>"""
    + _STYLE
    + """</head><body><h1>{{ title }}</h1><p>{{ message }}</p></body></html>"""
)


def preferences_page(
    view: ConsentView, token: str, topic: str | None, topic_names: Mapping[str, str]
) -> str:
    """The page behind the link: the one-click button and the topics with their choices."""
    leaving = f"“{topic_names.get(topic, topic)}”" if topic else "all marketing email"
    topics = [
        {
            "name": topic_names.get(name, name),
            "description": view.topics[name].description if name in view.topics else None,
            "channels": [
                {
                    "label": CHANNEL_NAMES[channel],
                    "field": field_name(name, channel),
                    "subscribed": view.status(name, channel) == SUBSCRIBED,
                }
                for channel in CUSTOMER_CHANNELS
            ],
        }
        for name in view.topic_names()
    ]
    return _PAGE.render(
        one_click=token,  # relative: the API may be served under a path prefix
        preferences=f"{token}/preferences",
        leaving=leaving,
        topics=topics,
        notes=consent_notes(view),
    )


def consent_notes(view: ConsentView) -> list[str]:
    """What holds whatever the topics say: withdrawals and a suppressed address."""
    notes = []
    if view.suppression is not None:
        notes.append(
            f"We cannot send email to your address ({view.suppression}); "
            "topic choices do not change that."
        )
    if view.marketing_email is not None:
        notes.append("You have left all marketing email. Joining a topic by email rejoins it.")
    if view.sms is not None:
        notes.append(
            "You have opted out of text messages (STOP); topic choices do not change that."
        )
    return notes


def saved_page(applied: Applied, token: str, topic_names: Mapping[str, str]) -> str:
    """The confirmation of the preferences form."""
    if applied.left_all:
        lines = ["You will get no more marketing from us, on any channel."]
    elif not applied.changes:
        lines = ["Nothing changed."]
    else:
        lines = [
            f"{topic_names.get(topic, topic)}: "
            f"{'subscribed' if status == SUBSCRIBED else 'unsubscribed'}"
            f"{'' if channel == 'all' else ' (' + CHANNEL_NAMES.get(channel, channel) + ')'}"
            for topic, channel, status in applied.changes
        ]
    return _DONE.render(
        title="Your choices are saved",
        lines=lines,
        notes=applied.notes,
        back=f"../{token}",  # from …/{token}/preferences
    )


def unsubscribed_page(topic: str | None, token: str, topic_names: Mapping[str, str]) -> str:
    """The answer to a one-click POST (the mail receiver's, or the page's button)."""
    if topic is None:
        return _DONE.render(
            title="You are unsubscribed.",
            lines=["You will get no more marketing email from us."],
            notes=[],
            back=None,
        )
    return _DONE.render(
        title="You are unsubscribed.",
        lines=[f"You will get no more “{topic_names.get(topic, topic)}” email from us."],
        notes=[],
        back=token,
    )


def problem_page(title: str, message: str) -> str:
    return _PROBLEM.render(title=title, message=message)
