"""Delivery policies and subscription topics in the journey language (issue 17, point 5): what a
journey and a send step may write, what ``validate`` reports (at file:line:col, with a hint),
and what the compiled plan's send nodes carry — through the validator and through the
``touchpoint`` command run as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from activities.policies import Decision, Message, PolicyChain
from language.validator import validate
from tests.conftest import ROOT
from tests.delivery import example_delivery
from tests.temporal import event, plan_from, running_workers, start_run
from tests.test_validate_checks import problems_of
from workflows.models import Profile, RunResult
from workflows.plan import Plan, SendNode
from workflows.policy_models import CapRule, QuietRule, SendPolicies

CONFIG = """\
defaults: {timezone: Europe/Berlin}
policies:
  frequency_caps:
    - {name: marketing-email-daily, limit: 2, per: 24h, channels: [email]}
  quiet_hours:
    - {name: evenings, channels: [sms, chat], from: "21:00", to: "08:00"}
    - {name: order-nights, channels: [sms], from: "22:00", to: "07:00", categories: [transactional]}
topics:
  newsletter: {name: Newsletter}
  recommendations: {name: Recommendations for you}
"""
TEMPLATE = "---\nsubject: Hello\n---\n<p>Hello</p>\n"


def project(tmp_path: Path, journey: str, config: str = CONFIG) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "touchpoint.yaml").write_text(config)
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "j.yaml").write_text(textwrap.dedent(journey))
    (tmp_path / "templates" / "hello").mkdir(parents=True)
    (tmp_path / "templates" / "hello" / "en.html").write_text(TEMPLATE)
    return tmp_path


def plan_of(root: Path) -> Plan:
    report = validate((), root=root)
    assert [p.format() for p in report.problems] == []
    return report.plans["j"]


def sends(plan: Plan) -> dict[str, SendNode]:
    return {n.id: n for n in plan.nodes.values() if isinstance(n, SendNode)}


FOLDED = """\
id: j
name: J
category: marketing
topic: newsletter
policies:
  frequency_caps:
    - {name: marketing-email-daily, limit: 1, per: 1d, channels: [email], action: defer}
  quiet_hours:
    - {name: sundays, days: [sun], channels: [email], action: skip}
    - {name: lunch, from: "12:00", to: "13:00", days: [mon, fri]}
  exempt: [evenings]
  actions: {marketing-email-daily: skip, lunch: skip}
  defer_max: 2d
trigger: {event: Signed Up}
steps:
  - id: hello
    send: email
    template: hello
    topic: recommendations
    policies:
      exempt: [lunch, evenings]
      actions: {marketing-email-daily: defer}
      defer_max: 12h
  - id: again
    send: email
    template: hello
"""


def test_a_send_carries_the_journeys_policies_folded_with_its_own(tmp_path: Path) -> None:
    nodes = sends(plan_of(project(tmp_path, FOLDED)))
    caps = (
        CapRule(
            name="marketing-email-daily",
            limit=1,
            window_seconds=86_400,
            channels=("email",),
            action="defer",
        ),
    )
    quiet = (
        QuietRule(name="sundays", days=(6,), channels=("email",), action="skip"),
        QuietRule(name="lunch", start="12:00", end="13:00", days=(0, 4)),
    )
    assert nodes["hello"].policies == SendPolicies(
        caps=caps,
        quiet=quiet,
        exempt=("evenings", "lunch"),  # the journey's, then the step's own
        actions={"marketing-email-daily": "defer", "lunch": "skip"},  # the step's win
        defer_max_seconds=12 * 3600,  # the step's
    )
    assert nodes["again"].policies == SendPolicies(
        caps=caps,
        quiet=quiet,
        exempt=("evenings",),
        actions={"marketing-email-daily": "skip", "lunch": "skip"},
        defer_max_seconds=2 * 86_400,  # the journey's
    )
    assert (nodes["hello"].topic, nodes["again"].topic) == ("recommendations", "newsletter")


def test_without_policies_a_send_carries_none_and_the_version_stays(tmp_path: Path) -> None:
    plain = FOLDED.split("policies:")[0] + "trigger: {event: Signed Up}\nsteps:\n"
    plain += "  - {id: hello, send: email, template: hello}\n"
    plan = plan_of(project(tmp_path / "a", plain))
    assert [node.policies for node in sends(plan).values()] == [None]
    empty = plan_of(project(tmp_path / "b", plain.replace("steps:", "policies: {}\nsteps:")))
    assert empty.version == plan.version  # nothing set: the same plan, the same version
    held = plan_of(
        project(tmp_path / "c", plain.replace("steps:", "policies: {defer_max: 1d}\nsteps:"))
    )
    assert held.version != plan.version
    assert sends(held)["hello"].policies == SendPolicies(defer_max_seconds=86_400)


def test_the_examples_name_their_topics() -> None:
    report = validate((), root=ROOT)
    assert report.ok, [p.format() for p in report.problems]
    assert set(report.config.topics) == {"newsletter", "recommendations", "surveys"}
    topics = {
        (plan.journey_id, node.id): node.topic
        for plan in report.plans.values()
        for node in sends(plan).values()
        if node.channel == "email"
    }
    assert topics[("newsletter-welcome", "welcome")] == "newsletter"
    assert topics[("laptop-recommendation", "recommend")] == "recommendations"
    assert topics[("post-purchase-accessories", "accessory-offer")] == "recommendations"
    assert topics[("post-purchase-accessories", "survey")] == "surveys"
    by_topic = {plan.journey_id: plan.topic for plan in report.plans.values()}
    assert set(by_topic.values()) == {"newsletter", "recommendations", None}
    # a marketing journey without a topic: only the marketing consent decides (docs/journeys.md)
    assert sorted(j for j, topic in by_topic.items() if topic is None) == [
        "vip-thank-you",
        "warranty-reminder",
    ]


MISTAKES = """\
id: j
name: J
category: marketing
topic: newsleter
policies:
  frequency_caps:
    - {name: evenings, limit: 1, per: 7d, channels: [emial]}
    - {name: weekly, limit: 1, per: 7d, categories: [transactional]}
  exempt: [marketing-email-dayly]
  actions: {evenngs: skip, order-nights: skip}
trigger: {event: Signed Up}
steps:
  - id: hello
    send: email
    template: hello
    topic: recomendations
    policies:
      exempt: [nothing]
"""


def test_validate_reports_each_policy_and_topic_mistake_where_it_stands(tmp_path: Path) -> None:
    assert problems_of(project(tmp_path, MISTAKES)) == [
        'journeys/j.yaml:4:8: topic: unknown topic "newsleter"; did you mean "newsletter"? '
        "(hint: use one of touchpoint.yaml's topics (newsletter, recommendations), or declare "
        "it under topics:)",
        "journeys/j.yaml:7:14: policies.frequency_caps[0].name: touchpoint.yaml has quiet "
        'hours named "evenings": a journey\'s frequency cap may replace a project frequency '
        "cap of the same name, not quiet hours (hint: give it another name)",
        "journeys/j.yaml:7:54: policies.frequency_caps[0].channels[0]: expected one of email, "
        'webhook, chat, sms, got "emial"; did you mean "email"? (hint: write one of these '
        "exactly as shown)",
        'journeys/j.yaml:8:53: policies.frequency_caps[1].categories: "weekly" holds only '
        "transactional messages, and this journey sends marketing ones: it would never hold one "
        "of them (hint: add marketing to its categories, or remove it)",
        'journeys/j.yaml:9:12: policies.exempt[0]: no policy named "marketing-email-dayly" in '
        'touchpoint.yaml or this journey; did you mean "marketing-email-daily"? '
        '(hint: rename it to "marketing-email-daily")',
        'journeys/j.yaml:10:13: policies.actions.evenngs: no policy named "evenngs" in '
        'touchpoint.yaml or this journey; did you mean "evenings"? (hint: rename it to '
        '"evenings")',
        'journeys/j.yaml:10:28: policies.actions.order-nights: "order-nights" (touchpoint.yaml) '
        "holds only transactional messages, and this journey sends marketing ones: there is "
        "nothing to exempt or change (hint: remove it from here)",
        'journeys/j.yaml:16:12: steps[0].topic: unknown topic "recomendations"; did you mean '
        '"recommendations"? (hint: use one of touchpoint.yaml\'s topics (newsletter, '
        "recommendations), or declare it under topics:)",
        'journeys/j.yaml:18:16: steps[0].policies.exempt[0]: no policy named "nothing" in '
        "touchpoint.yaml or this journey (hint: the policies are marketing-email-daily, "
        "evenings, order-nights, weekly)",
    ]


TRANSACTIONAL = """\
id: j
name: J
category: transactional
topic: newsletter
policies:
  quiet_hours:
    - {name: nights, from: "22:00", to: "07:00"}
    - {name: sms-nights, from: "22:00", to: "07:00", channels: [sms], categories: [transactional]}
  exempt: [order-nights, evenings]
trigger: {event: Order Shipped}
steps:
  - send: email
    template: hello
    topic: newsletter
"""


def test_topics_and_marketing_only_policies_do_not_go_on_a_transactional_journey(
    tmp_path: Path,
) -> None:
    topic_problem = (
        "topic: transactional messages go whatever the customer's topics: a topic would never "
        "hold one (hint: remove topic, or make the journey marketing if customers may choose "
        "not to get it)"
    )
    assert problems_of(project(tmp_path, TRANSACTIONAL)) == [
        f"journeys/j.yaml:4:8: {topic_problem}",
        'journeys/j.yaml:7:7: policies.quiet_hours[0]: "nights" holds only marketing messages '
        "(the default categories), and this journey sends transactional ones: it would never "
        "hold one of them (hint: add categories: [transactional], or remove it)",
        'journeys/j.yaml:9:26: policies.exempt[1]: "evenings" (touchpoint.yaml) holds only '
        "marketing messages, and this journey sends transactional ones: there is nothing to "
        "exempt or change (hint: remove it from here)",
        f"journeys/j.yaml:14:12: steps[0].{topic_problem}",
    ]


def test_a_journey_policy_may_replace_a_project_one_of_the_same_name(tmp_path: Path) -> None:
    journey = FOLDED.replace("exempt: [lunch, evenings]", "exempt: [lunch]")
    journey = journey.replace("name: lunch,", "name: evenings,").replace("lunch: skip", "")
    journey = journey.replace("exempt: [lunch]", "exempt: [evenings]")
    [quiet] = [
        rule
        for rule in sends(plan_of(project(tmp_path, journey)))["hello"].policies.quiet  # type: ignore[union-attr]
        if rule.name == "evenings"
    ]
    assert (quiet.start, quiet.end, quiet.channels) == ("12:00", "13:00", ())


def test_without_declared_topics_any_topic_name_is_taken(tmp_path: Path) -> None:
    config = CONFIG.split("topics:")[0]
    plan = plan_of(project(tmp_path, FOLDED.replace("topic: newsletter", "topic: deals"), config))
    assert plan.topic == "deals"


def test_a_step_cannot_hold_caps_of_its_own(tmp_path: Path) -> None:
    journey = FOLDED.replace("defer_max: 12h", "defer_max: 12h\n      quiet_hours: []")
    assert problems_of(project(tmp_path, journey)) == [
        'journeys/j.yaml:24:7: steps[0].policies.quiet_hours: unknown field "quiet_hours" '
        "(hint: allowed here: exempt, actions, defer_max)"
    ]


def test_the_command_reports_them_at_file_line_column(tmp_path: Path) -> None:
    """``touchpoint validate`` as a marketer runs it: exit 1, each problem on its own line."""
    root = project(tmp_path, MISTAKES)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "validate", "--format", "json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    found = json.loads(done.stdout)
    where = [(p["line"], p["column"], p["path"]) for p in found]
    assert where == [
        (4, 8, "topic"),
        (7, 14, "policies.frequency_caps[0].name"),
        (7, 54, "policies.frequency_caps[0].channels[0]"),
        (8, 53, "policies.frequency_caps[1].categories"),
        (9, 12, "policies.exempt[0]"),
        (10, 13, "policies.actions.evenngs"),
        (10, 28, "policies.actions.order-nights"),
        (16, 12, "steps[0].topic"),
        (18, 16, "steps[0].policies.exempt[0]"),
    ]
    text = subprocess.run(
        [sys.executable, "-m", "cli", "validate"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
    )
    assert text.returncode == 1
    assert (
        'journeys/j.yaml:9:12: policies.exempt[0]: no policy named "marketing-email-dayly"'
        in text.stdout
    )


# --- the send request carries them to the policy chain ------------------------------------------


@dataclass
class Recorder:
    """A policy that objects to nothing and remembers what each message carried."""

    name: str = "recorder"
    seen: list[tuple[str, str | None, SendPolicies | None]] = field(default_factory=list)

    def decide(self, message: Message) -> Decision | None:
        request = message.request
        self.seen.append((request.step_id, request.topic, request.policies))
        return None


async def test_each_send_request_carries_its_steps_policies_and_topic(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    journey = FOLDED.replace("template: hello", "template: newsletter-welcome")
    journey = journey.replace("exempt: [evenings]", "exempt: [no-mail-at-night]")
    journey = journey.replace("exempt: [lunch, evenings]", "exempt: [lunch]")
    journey = journey.replace(
        '    - {name: lunch, from: "12:00", to: "13:00", days: [mon, fri]}',
        '    - {name: lunch, from: "12:00", to: "13:00", days: [mon, fri]}\n'
        '    - {name: no-mail-at-night, from: "22:00", to: "06:00"}',
    )
    plan = plan_from(journey)
    nodes = sends(plan)
    recorder = Recorder()
    activities = example_delivery(tmp_path, chain=PolicyChain([recorder]))
    async with running_workers(time_env.client, activities.all()) as prefix:
        handle = await start_run(
            time_env.client, plan, prefix, event("Signed Up", customer="max"),
            profile=Profile(id="max", email="max@example.com", locale="en"),
            workflow_id=f"policies-{uuid.uuid4()}",
        )  # fmt: skip
        result = RunResult.model_validate(await handle.result())
    assert [e.kind for e in result.timeline] == ["sent", "sent"]
    assert recorder.seen == [
        ("hello", "recommendations", nodes["hello"].policies),
        ("again", "newsletter", nodes["again"].policies),
    ]
    assert nodes["again"].policies is not None
    assert nodes["again"].policies.exempt == ("no-mail-at-night",)


def test_a_malformed_policy_does_not_hide_the_other_problems(tmp_path: Path) -> None:
    journey = MISTAKES.replace("per: 7d, channels: [emial]", "per: a week, channels: [email]")
    problems = problems_of(project(tmp_path, journey))
    assert problems[2].startswith(
        'journeys/j.yaml:7:39: policies.frequency_caps[0].per: expected a duration like "3d", '
        'got "a week"'
    )
    assert len(problems) == 9  # the others: all but the channel mistake, now a duration
    assert any("policies.exempt[0]: no policy named" in problem for problem in problems)


def test_validate_checks_the_projects_policies_too(tmp_path: Path) -> None:
    journey = "id: j\nname: J\ncategory: marketing\ntrigger: {event: A}\nsteps: [end]\n"
    typo = CONFIG.replace("[sms, chat]", "[sms, chatt]")
    assert problems_of(project(tmp_path / "typo", journey, typo)) == [
        "touchpoint.yaml:6:40: policies.quiet_hours[0].channels[1]: expected one of email, "
        'webhook, chat, sms, got "chatt"; did you mean "chat"? (hint: write one of these '
        "exactly as shown)",
    ]
    shared_name = CONFIG.replace("{name: order-nights", "{name: marketing-email-daily")
    assert problems_of(project(tmp_path / "name", journey, shared_name)) == [
        "touchpoint.yaml:7:14: policies.quiet_hours[1].name: a frequency cap is also named "
        '"marketing-email-daily": exempt and actions name a policy by its name, so a name may '
        "stand for one policy only (hint: give it another name)",
    ]
