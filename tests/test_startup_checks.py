"""Secrets are checked when a worker or the API starts, not at the first send: every variable the
journeys need — through the destinations and connections they use, the email provider, and
marketing email's unsubscribe links — listed in one line; ``touchpoint validate --env`` runs the
same check for CI. The processes are the installed ones; Temporal is a port nobody listens on,
which proves each check comes before any connection."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from language.validator import validate
from ops.environment import Need, needs
from tests.conftest import EXAMPLE_SECRETS, ROOT
from tests.faults.stack import make_project
from tests.net import free_port
from tests.test_operator_errors import (
    TOUCHPOINT,
    WORKER,
    assert_one_line,
    environment,
    run_all,
)

EXAMPLE_MISSING = (
    "SHOP_API_TOKEN is not set (connections.shop-api.headers.Authorization); "
    "CRM_WEBHOOK_SECRET is not set (destinations.crm.secrets[0]); "
    "SLACK_SUPPORT_WEBHOOK_URL is not set (destinations.support-team.url); "
    "TOUCHPOINT_UNSUBSCRIBE_SECRET is not set (it signs the unsubscribe links of marketing "
    "email: birthday-greeting, laptop-recommendation, monday-newsletter, newsletter-welcome, "
    "post-purchase-accessories, vip-thank-you, warranty-reminder)"
    " — set them where it runs (`touchpoint validate --env` checks them)\n"
)
NEWSLETTER = """
id: newsletter
name: Newsletter
category: marketing
trigger:
  event: Subscribed
steps:
  - send: email
    template: note
"""
UNUSED_DESTINATION = """
destinations:
  unused:
    type: slack
    url: ${UNUSED_SLACK_URL}
"""


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the example project (journeys, templates, touchpoint.yaml)."""
    project = tmp_path / "shop"
    project.mkdir()
    for name in ("touchpoint.yaml", "journeys", "templates"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / name)
    return project


def nobody_listens() -> str:
    return f"127.0.0.1:{free_port()}"


def test_the_example_needs_what_its_journeys_use() -> None:
    report = validate((), root=ROOT)
    assert [(n.variable, n.why, n.journeys) for n in needs(report)] == [
        (
            "SHOP_API_TOKEN",
            "connections.shop-api.headers.Authorization",
            ("laptop-recommendation", "post-purchase-accessories"),
        ),
        ("CRM_WEBHOOK_SECRET", "destinations.crm.secrets[0]", ("post-purchase-accessories",)),
        (
            "SLACK_SUPPORT_WEBHOOK_URL",
            "destinations.support-team.url",
            ("post-purchase-accessories",),
        ),
        (
            "TOUCHPOINT_UNSUBSCRIBE_SECRET",
            "it signs the unsubscribe links of marketing email: birthday-greeting, "
            "laptop-recommendation, monday-newsletter, newsletter-welcome, "
            "post-purchase-accessories, vip-thank-you, warranty-reminder",
            (
                "birthday-greeting",
                "laptop-recommendation",
                "monday-newsletter",
                "newsletter-welcome",
                "post-purchase-accessories",
                "vip-thank-you",
                "warranty-reminder",
            ),
        ),
    ]


def test_a_destination_no_journey_uses_needs_nothing(tmp_path: Path) -> None:
    project = make_project(tmp_path / "shop", {"newsletter": NEWSLETTER})
    with (project / "touchpoint.yaml").open("a") as config:
        config.write(UNUSED_DESTINATION)
    report = validate((), root=project)
    assert report.ok, [p.format() for p in report.problems]
    assert needs(report) == [
        Need(
            "TOUCHPOINT_UNSUBSCRIBE_SECRET",
            (),
            "it signs the unsubscribe links of marketing email: newsletter",
            ("newsletter",),
        )
    ]


def test_the_worker_and_the_api_refuse_to_start_listing_every_missing_variable(
    example: Path,
) -> None:
    env = environment(TOUCHPOINT_TEMPORAL_ADDRESS=nobody_listens())
    worker, worker_script, api = run_all(
        [[TOUCHPOINT, "worker"], [*WORKER, "--project", str(example)], [TOUCHPOINT, "api"]],
        example,
        env,
    )
    assert_one_line(worker, "✗ the worker cannot start: " + EXAMPLE_MISSING)
    assert_one_line(worker_script, "✗ the worker cannot start: " + EXAMPLE_MISSING)
    assert_one_line(api, "✗ the API cannot start: " + EXAMPLE_MISSING)


def test_touchpoint_dev_checks_before_it_starts_anything(example: Path) -> None:
    [dev] = run_all(
        [[TOUCHPOINT, "dev", "--temporal-port", str(free_port()), "--ui-port", "0"]],
        example,
        environment(),
    )
    assert_one_line(  # its own unsubscribe secret is in .touchpoint/
        dev,
        "✗ touchpoint dev cannot start: "
        "SHOP_API_TOKEN is not set (connections.shop-api.headers.Authorization); "
        "CRM_WEBHOOK_SECRET is not set (destinations.crm.secrets[0]); "
        "SLACK_SUPPORT_WEBHOOK_URL is not set (destinations.support-team.url)"
        " — set them where it runs (`touchpoint validate --env` checks them)\n",
    )
    assert not (example / ".touchpoint" / "logs").exists(), "no process was started"


def test_provider_secrets_are_checked_too(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "shop", {"newsletter": NEWSLETTER}, email={"provider": "sendgrid"}
    )
    env = environment(
        TOUCHPOINT_TEMPORAL_ADDRESS=nobody_listens(),
        TOUCHPOINT_UNSUBSCRIBE_SECRET="too-short",
        SENDGRID_WEBHOOK_PUBLIC_KEY="not-a-key",
    )
    worker, api = run_all([[TOUCHPOINT, "worker"], [TOUCHPOINT, "api"]], project, env)
    sendgrid = "SENDGRID_API_KEY is not set (email.provider is sendgrid)"
    short = (
        "TOUCHPOINT_UNSUBSCRIBE_SECRET is too short (use at least 16 bytes) (it signs the "
        "unsubscribe links of marketing email: newsletter)"
    )
    fix = " — set them where it runs (`touchpoint validate --env` checks them)\n"
    assert_one_line(worker, f"✗ the worker cannot start: {sendgrid}; {short}{fix}")
    assert_one_line(
        api,
        f"✗ the API cannot start: {sendgrid}; {short}; SENDGRID_WEBHOOK_PUBLIC_KEY is not a "
        "public key (expected base64 DER SubjectPublicKeyInfo, as shown in SendGrid's mail "
        f"settings) (the SendGrid Event Webhook){fix}",
    )


def test_a_recording_worker_needs_no_secrets(example: Path, tmp_path: Path) -> None:
    address = nobody_listens()
    env = environment(
        TOUCHPOINT_TEMPORAL_ADDRESS=address, TOUCHPOINT_RECORD_FILE=str(tmp_path / "sent.jsonl")
    )
    [worker] = run_all([[*WORKER, "--project", str(example)]], example, env)
    assert worker.stderr.startswith(f"✗ Temporal is not reachable at {address} "), worker.stderr


def test_validate_env_lists_every_missing_variable_where_it_is_referenced(
    example: Path,
) -> None:
    without = subprocess.run(
        [TOUCHPOINT, "validate", "--env"],
        cwd=example,
        env=environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    hint = "(hint: set it where the worker and the API run"
    assert without.returncode == 1
    assert without.stdout.splitlines() == [
        "touchpoint.yaml:3:1: environment variable TOUCHPOINT_UNSUBSCRIBE_SECRET is not set: "
        "it signs the unsubscribe links of marketing email: birthday-greeting, "
        "laptop-recommendation, monday-newsletter, newsletter-welcome, "
        f"post-purchase-accessories, vip-thank-you, warranty-reminder {hint})",
        "touchpoint.yaml:16:10: destinations.support-team.url: environment variable "
        f"SLACK_SUPPORT_WEBHOOK_URL is not set {hint}; used by post-purchase-accessories)",
        "touchpoint.yaml:21:9: destinations.crm.secrets[0]: environment variable "
        f"CRM_WEBHOOK_SECRET is not set {hint}; used by post-purchase-accessories)",
        "touchpoint.yaml:27:22: connections.shop-api.headers.Authorization: environment "
        f"variable SHOP_API_TOKEN is not set {hint}; used by laptop-recommendation, "
        "post-purchase-accessories)",
    ]
    assert without.stderr == (
        "✗ 4 problems in 1 file (7 journeys, 43 template files, touchpoint.yaml checked)\n"
    )

    complete = subprocess.run(
        [TOUCHPOINT, "validate", "--env"],
        cwd=example,
        env=environment(**EXAMPLE_SECRETS),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (complete.returncode, complete.stdout) == (
        0,
        "✓ 7 journeys, 43 template files, touchpoint.yaml: no problems; the environment has "
        "every variable they need\n",
    )


def test_validate_without_env_stays_as_it_was(example: Path) -> None:
    done = subprocess.run(
        [TOUCHPOINT, "validate"],
        cwd=example,
        env=environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (
        0,
        "✓ 7 journeys, 43 template files, touchpoint.yaml: no problems\n",
    )
