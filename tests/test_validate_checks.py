"""What ``touchpoint validate`` checks before anything runs (issue 14, "checked before they run"):
what templates and expressions read, what the sandbox refuses, structured templates rendered with
the sample data, every problem at once, and the sentences of the format errors.

Each project here is written to a temporary folder and validated whole, as a marketer would; a
few cases run the installed ``touchpoint`` executable as a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from jinja2 import TemplateError
from jinja2.exceptions import SecurityError
from temporalio.exceptions import ApplicationError

from activities.rendering import Renderer
from language.expressions import (
    MARKETING_EMAIL_NAMES,
    RENDERER_NAMES,
    TEMPLATE_NAMES,
    expression_environment,
)
from language.validator import validate
from workflows.models import Event, Profile, SendRequest

CONFIG = """\
defaults:
  locale: en
destinations:
  crm: {type: webhook, url: "https://crm.example/hooks"}
connections:
  shop: {base_url: "https://shop.example/api"}
"""
EMAIL = "---\nsubject: Hello\n---\n"


def project(tmp_path: Path, journeys: dict[str, str], templates: dict[str, str]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "touchpoint.yaml").write_text(CONFIG)
    for name, text in journeys.items():
        path = tmp_path / "journeys" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for name, text in templates.items():
        path = tmp_path / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def problems_of(root: Path) -> list[str]:
    cwd = Path.cwd()
    os.chdir(root)
    try:
        return [p.format() for p in validate((), root=root).problems]
    finally:
        os.chdir(cwd)


def journey(steps: str, category: str = "marketing", event: str = "Signed Up") -> str:
    return (
        f"id: j\nname: J\ncategory: {category}\ntrigger:\n  event: {event}\nsteps:\n"
        + textwrap.indent(textwrap.dedent(steps), "  ")
    )


# --- 7: the names templates use ------------------------------------------------------------------


def test_a_typo_in_a_template_name_is_caught_with_did_you_mean_and_its_line(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"j": journey("- send: email\n  template: welcome\n")},
        {"welcome/en.html": EMAIL + "<p>Hi</p>\n<p>{{ profil.traits.first_name }}</p>\n"},
    )
    assert problems_of(root) == [
        'templates/welcome/en.html:5:7: unknown name "profil"; did you mean "profile"? '
        "(hint: a template sees profile, event, events, vars, lookups, journey, message, step, "
        "now, and unsubscribe_url in marketing emails)"
    ]


def test_optional_data_stays_allowed(tmp_path: Path) -> None:
    body = (
        EMAIL
        + "{{ profile.traits.first_name | default('there') }} {{ vars.coupon | default('') }}\n"
        "{% if events.answer is defined %}{{ events.answer.properties.score }}{% endif %}\n"
        "{% if unsubscribe_url is defined %}{{ unsubscribe_url }}{% endif %}\n"
        "{% for k, v in vars.items() %}{{ k }}{% endfor %}{{ lookups.get('x') }}\n"
    )
    root = project(
        tmp_path,
        {"j": journey("- send: email\n  template: welcome\n", category="transactional")},
        {"welcome/en.html": body},
    )
    assert problems_of(root) == []


def test_run_data_must_be_filled_in_before_the_send_that_reads_it(tmp_path: Path) -> None:
    steps = """\
    - set: {score: 1}
    - send: email
      template: welcome
    - id: answer
      wait_for: Survey Answered
      timeout: 3d
    - lookup: shop
      path: /picks
      save_as: picks
    """
    body = EMAIL + "{{ vars.score }} {{ vars.scroe }}\n{{ events.answer }} {{ lookups.pics }}\n"
    root = project(tmp_path, {"j": journey(steps)}, {"welcome/en.html": body})
    assert problems_of(root) == [
        'templates/welcome/en.html:4:21: unknown "vars.scroe" when step "send-2" '
        '(journeys/j.yaml:8) sends this; did you mean "vars.score"? '
        '(hint: vars holds the values set steps store; before "send-2": score)',
        'templates/welcome/en.html:5:4: "events.answer" is not there yet when step "send-2" '
        '(journeys/j.yaml:8) sends this (hint: step "answer" fills it in, after "send-2": '
        "move that step before it, or make it optional: events.answer | default(…))",
        'templates/welcome/en.html:5:24: unknown "lookups.pics" when step "send-2" '
        '(journeys/j.yaml:8) sends this; did you mean "lookups.picks"? (hint: lookups holds '
        'the answers of lookup steps, by save_as; before "send-2": nothing yet)',
    ]


def test_a_step_after_a_loop_back_sees_what_the_loop_filled_in(tmp_path: Path) -> None:
    steps = """\
    - id: first
      send: email
      template: welcome
    - set: {score: 1}
    - wait: 1d
    - goto: first
    """
    body = EMAIL + "{{ vars.score }}\n"
    assert problems_of(project(tmp_path, {"j": journey(steps)}, {"welcome/en.html": body})) == []


def test_unsubscribe_url_only_in_marketing_email(tmp_path: Path) -> None:
    body = EMAIL + '<a href="{{ unsubscribe_url }}">Unsubscribe</a>\n'
    send = "- send: email\n  template: welcome\n"
    marketing = project(tmp_path / "m", {"j": journey(send)}, {"welcome/en.html": body})
    assert problems_of(marketing) == []
    transactional = project(
        tmp_path / "t", {"j": journey(send, "transactional")}, {"welcome/en.html": body}
    )
    assert problems_of(transactional) == [
        "templates/welcome/en.html:4:13: unsubscribe_url is given to marketing emails only, and "
        'step "send-1" (journeys/j.yaml:7) sends this as a transactional email (hint: show the '
        "link only where there is one: {% if unsubscribe_url is defined %}…{% endif %})"
    ]


def test_fixed_shapes_and_shared_partials_are_checked(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"j": journey("- send: email\n  template: welcome\n")},
        {
            "welcome/en.html": EMAIL + '{{ profile.first_name }}{% include "_partials/f.html" %}\n',
            "_partials/f.html": "{{ jouney.name }}\n",
        },
    )
    assert problems_of(root) == [
        'templates/_partials/f.html:1:4: unknown name "jouney"; did you mean "journey"? '
        "(hint: a template sees profile, event, events, vars, lookups, journey, message, step, "
        "now, and unsubscribe_url in marketing emails)",
        'templates/welcome/en.html:4:4: profile has no "first_name" (hint: a customer\'s own '
        "data is under profile.traits, e.g. profile.traits.first_name)",
    ]


EVENT = Event.model_validate(
    {"message_id": "e", "customer_id": "c", "event": "E", "timestamp": "2027-01-04T09:00:00Z"}
)


def test_the_names_validation_allows_are_the_names_the_renderer_gives(tmp_path: Path) -> None:
    """TEMPLATE_NAMES and friends must be exactly what a real render hands a template."""
    root = project(tmp_path, {}, {"t/en.html": EMAIL + "x\n"})
    renderer = Renderer(root / "templates", "en")
    request = SendRequest(
        message_id="m",
        journey_id="j",
        journey_version="v",
        category="marketing",
        step_id="s",
        channel="email",
        template="t",
        customer_id="c",
        profile=Profile(id="c"),
        context={"event": EVENT.names(), "now": "x"},
    )
    given = renderer._names(request, "en", "https://u")
    assert set(given) == set(TEMPLATE_NAMES + MARKETING_EMAIL_NAMES + RENDERER_NAMES)
    assert set(given["profile"]) == {"id", "email", "phone", "locale", "timezone", "traits"}
    assert set(given["event"]) == {"event", "properties", "timestamp", "message_id"}


def test_step_expressions_check_run_data_too(tmp_path: Path) -> None:
    steps = """\
    - set:
        score: 1
        double: vars.score * 2
    - branch:
        - if: vars.scroe > 1 or lookups.picks | default(false)
          goto: end
    """
    assert problems_of(project(tmp_path, {"j": journey(steps)}, {})) == [
        'journeys/j.yaml:11:18: steps[1].branch[0].if: unknown "vars.scroe"; did you mean '
        '"vars.score"? (hint: vars holds the values set steps store; before "branch-2": '
        "double, score)"
    ]


# --- 2: what the sandbox refuses ------------------------------------------------------------------

REFUSED = [
    ("profile.__class__", '"__class__" reaches into Python\'s internals'),
    ("profile.traits._token", "names that start with _ are not read with a dot"),
    ("profile.traits.tags.append(1)", '".append" would change data'),
    ("profile.traits.update({'a': 1})", '".update" would change data'),
    ("'{0.__class__}'.format(profile)", "reaches for a name that starts with _"),
    ("range(1000000) | list", "range() may make at most 100000 numbers"),
    ("'x' * 10**9", "this * can never run"),
]


@pytest.mark.parametrize(("source", "message"), REFUSED)
def test_what_the_sandbox_refuses_is_rejected_in_expressions(
    source: str, message: str, tmp_path: Path
) -> None:
    steps = f'- set:\n    x: "{source}"\n'
    [problem] = problems_of(project(tmp_path, {"j": journey(steps)}, {}))
    assert problem.startswith("journeys/j.yaml:8:") and "steps[0].set.x: " in problem
    assert message in problem and "(hint: " in problem


@pytest.mark.parametrize(("source", "message"), [r for r in REFUSED if "_token" not in r[0]])
def test_what_is_rejected_is_refused_at_run_time_too(source: str, message: str) -> None:
    """validate rejects what can never run: the sandbox refuses each one, even when the data
    has a key of that name. (``x._token`` is the exception, by rule: the sandbox reads a
    mapping's key ``_token`` that way, validate asks for ``x['_token']``.)"""
    profile = {"traits": {"tags": [], "update": 1}, "__class__": "x"}
    function = expression_environment().compile_expression(source, undefined_to_none=False)
    with pytest.raises((SecurityError, TemplateError, OverflowError)):
        value = function(profile=profile)
        str(value)  # an unsafe attribute is an undefined that fails when used


@pytest.mark.parametrize(("source", "message"), REFUSED)
def test_what_the_sandbox_refuses_is_rejected_in_templates(
    source: str, message: str, tmp_path: Path
) -> None:
    root = project(
        tmp_path,
        {"j": journey("- send: email\n  template: welcome\n")},
        {"welcome/en.html": EMAIL + "<p>\n  {{ " + source + " }}\n</p>\n"},
    )
    found = [p for p in problems_of(root) if message in p]
    assert found and found[0].startswith("templates/welcome/en.html:5:")


def test_a_key_that_starts_with_an_underscore_can_be_read_in_brackets(tmp_path: Path) -> None:
    steps = "- set:\n    x: profile.traits['_token'] | default('')\n"
    assert problems_of(project(tmp_path, {"j": journey(steps)}, {})) == []


# --- 8: structured templates with the sample data ------------------------------------------------


def webhook_project(tmp_path: Path, body: str, steps: str = "") -> Path:
    send = "- send: webhook\n  to: crm\n  template: crm\n"
    return project(tmp_path, {"j": journey(steps + send)}, {"crm/en.json": body})


def test_a_trailing_comma_is_found_at_its_line(tmp_path: Path) -> None:
    body = '{\n  "id": {{ profile.id | tojson }},\n  "n": 1,\n}\n'
    assert problems_of(webhook_project(tmp_path, body)) == [
        'templates/crm/en.json:3:9: not valid JSON with the sample data: a comma before "}" '
        "(hint: remove the comma after the last item)"
    ]


def test_a_trailing_comma_in_a_loop_says_how_to_separate_items(tmp_path: Path) -> None:
    body = (
        '{"tags": [{% for t in profile.traits.tags | default([]) %}{{ t | tojson }},'
        "{% endfor %}]}\n"
    )
    [problem] = problems_of(webhook_project(tmp_path, body))
    assert problem.startswith("templates/crm/en.json:1:75: ")
    assert "{% if not loop.last %},{% endif %}" in problem


def test_a_value_without_tojson_gets_the_tojson_hint(tmp_path: Path) -> None:
    body = '{\n  "id": {{ profile.id }}\n}\n'
    assert problems_of(webhook_project(tmp_path, body)) == [
        "templates/crm/en.json:2:9: not valid JSON with the sample data: a value is inserted "
        "as 'sample-customer', not as JSON (hint: write values with | tojson, e.g. "
        "{{ profile.id | tojson }})"
    ]


def test_a_typo_in_a_webhook_template_gets_did_you_mean_not_a_json_hint(tmp_path: Path) -> None:
    body = '{"id": {{ profil.id | tojson }}}\n'
    [problem] = problems_of(webhook_project(tmp_path, body))
    assert 'unknown name "profil"; did you mean "profile"?' in problem
    assert "tojson" not in problem and "default" not in problem


def test_a_good_webhook_template_passes_whatever_the_data(tmp_path: Path) -> None:
    body = (
        '{\n  "id": {{ profile.id | tojson }},\n  "total": {{ event.properties.total }},\n'
        '  "name": "{{ profile.traits.name | default("") }}",\n'
        '  "score": {{ vars.score | int }},\n  "items": [{% for p in lookups.picks.products %}'
        "{{ p.name | tojson }}{% if not loop.last %},{% endif %}{% endfor %}]\n}\n"
    )
    steps = "- set: {score: 1}\n- lookup: shop\n  path: /picks\n  save_as: picks\n"
    assert problems_of(webhook_project(tmp_path, body, steps)) == []


def render_json(tmp_path: Path, body: str) -> str:
    (tmp_path / "templates" / "crm").mkdir(parents=True)
    (tmp_path / "templates" / "crm" / "en.json").write_text(body)
    request = SendRequest(
        message_id="m",
        journey_id="j",
        journey_version="v",
        category="transactional",
        step_id="s",
        channel="webhook",
        template="crm",
        destination="crm",
        customer_id="c",
        profile=Profile(id="c"),
        context={"vars": {"n": 1}},
    )
    with pytest.raises(ApplicationError) as failed:
        Renderer(tmp_path / "templates", "en").render(request)
    return failed.value.message


def test_run_time_json_errors_get_the_hint_that_fits(tmp_path: Path) -> None:
    comma = render_json(tmp_path / "a", '{"n": {{ vars.n }},}\n')
    assert "remove the comma after the last item" in comma and "tojson" not in comma
    raw = render_json(tmp_path / "b", '{"id": {{ profile.id }}}\n')
    assert "write values with | tojson" in raw


def test_a_run_time_typo_gets_did_you_mean_not_the_default_hint(tmp_path: Path) -> None:
    message = render_json(tmp_path, '{"id": {{ profil.id | tojson }}}\n')
    assert 'did you mean "profile"?' in message and "| default" not in message
    missing = render_json(tmp_path / "b", '{"x": "{{ vars.missing }}"}\n')
    assert "give optional data a | default" in missing


# --- 10: every problem at once, and the sentences ------------------------------------------------


def test_every_problem_at_once(tmp_path: Path) -> None:
    steps = """\
    - wait: three days
    - send: email
      template: welcom
    - branch:
        - if: profil.traits.vip
          goto: end
    """
    root = project(tmp_path, {"j": journey(steps)}, {"welcome/en.html": EMAIL + "Hi\n"})
    assert [p.split(" (hint")[0] for p in problems_of(root)] == [
        'journeys/j.yaml:7:11: steps[0].wait: expected a duration like "3d", got "three days"',
        'journeys/j.yaml:9:15: steps[1].template: unknown template "welcom"; '
        'did you mean "welcome"?',
        'journeys/j.yaml:11:13: steps[2].branch[0].if: unknown name "profil"; '
        'did you mean "profile"?',
    ]


@pytest.mark.parametrize(
    ("steps", "event", "expected"),
    [
        (
            "- wait: 0d\n",
            "X",
            'steps[0].wait: a duration must be more than zero, got "0d"',
        ),
        (
            "- wait: 1d\n",
            '""',
            "trigger.event: the event name is empty: write the event's name, e.g. Order Completed",
        ),
        (
            "- wait_until: {time: 9am}\n",
            "X",
            'times of day use the 24-hour clock: write "09:00", not "9am"',
        ),
        (
            '- wait_until: {time: "9:75"}\n',
            "X",
            '"9:75" is not a time of day: hours go from 0 to 23, minutes from 00 to 59',
        ),
        (
            "- wait_until: {date: \"'2027-02-30'\"}\n",
            "X",
            "the date cannot be read: '2027-02-30' is not a date or time in ISO form",
        ),
        (
            "- wait_until: {date: 2027-03-01}\n",
            "X",
            "2027-03-01 is read as arithmetic, not as a date",
        ),
    ],
)
def test_format_errors_read_as_sentences_with_a_hint(
    steps: str, event: str, expected: str, tmp_path: Path
) -> None:
    [problem] = problems_of(project(tmp_path, {"j": journey(steps, event=event)}, {}))
    assert expected in problem and "(hint: " in problem


@pytest.mark.parametrize("written", ["9:00", '"09:00"', "'9:00'", "09:00"])
def test_times_of_day_as_the_docs_promise(written: str, tmp_path: Path) -> None:
    from language.validator import compile_text

    text = journey(f"- id: morning\n  wait_until:\n    time: {written}\n")
    plan, problems, _ = compile_text(text, "j.yaml")
    assert problems == [] and plan is not None
    assert plan.nodes["morning"].time == "09:00"  # type: ignore[union-attr]


def test_the_installed_executable_reports_everything_and_exits_1(tmp_path: Path) -> None:
    steps = "- wait: 0d\n- send: email\n  template: welcom\n"
    root = project(
        tmp_path,
        {"j": journey(steps), "broken": "id: broken\nname: [Broken\nsteps: []\n"},
        {
            "welcome/en.html": EMAIL + "{{ profil.id }}\n",
            "crm/en.json": '{"a": 1,}\n',
        },
    )
    done = run_installed(root)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        'journeys/broken.yaml:2:7: YAML syntax: this "[" is never closed (reading stopped at '
        "line 3: expected ',' or ']', but got ':') (hint: close the list with \"]\", or put "
        'text that starts with "[" in quotes)',
        'journeys/j.yaml:7:11: steps[0].wait: a duration must be more than zero, got "0d" '
        "(hint: write at least 1s, or leave the setting (or the wait) out)",
        'journeys/j.yaml:9:15: steps[1].template: unknown template "welcom"; did you mean '
        '"welcome"? (hint: create templates/welcom/en.html)',
        'templates/crm/en.json:1:8: not valid JSON with the sample data: a comma before "}" '
        "(hint: remove the comma after the last item)",
        'templates/welcome/en.html:4:4: unknown name "profil"; did you mean "profile"? '
        "(hint: a template sees profile, event, events, vars, lookups, journey, message, step, "
        "now, and unsubscribe_url in marketing emails)",
    ]
    assert "5 problems in 4 files" in done.stderr


def test_the_installed_executable_on_a_hostile_template(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"j": journey("- send: email\n  template: welcome\n")},
        {"welcome/en.html": EMAIL + "{{ ''.__class__.__mro__ }}{{ range(10**9) | list }}\n"},
    )
    done = run_installed(root)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "reaches into Python's internals" in done.stdout
    assert "range() may make at most 100000 numbers" in done.stdout


def run_installed(root: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "touchpoint"
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run(
        [str(script), "validate"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
    )


@pytest.mark.parametrize(
    "body",
    [
        "[{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}"
        "{% endfor %}{% endfor %}{% endfor %}1]",
        "[{% for a in 'x' * 100000 %}{% for b in 'x' * 100000 %}{{ 1 }},{% endfor %}{% endfor %}1]",
        "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
    ],
)
def test_the_sample_render_of_a_hostile_template_ends_quickly(body: str, tmp_path: Path) -> None:
    """Loops run a few turns at most in the sample render: validate never hangs on one."""
    import time

    started = time.monotonic()
    problems_of(webhook_project(tmp_path, body))
    assert time.monotonic() - started < 10


def test_lookup_paths_check_run_data_too(tmp_path: Path) -> None:
    steps = """\
    - lookup: shop
      path: /customers/{{ profile.id }}
      save_as: customer
    - lookup: shop
      path: /picks/{{ lookups.custmer.segment }}
      save_as: picks
    """
    [problem] = problems_of(project(tmp_path, {"j": journey(steps)}, {}))
    assert problem.startswith(
        'journeys/j.yaml:11:29: steps[1].path: unknown "lookups.custmer"; '
        'did you mean "lookups.customer"?'
    )
