"""Deployment settings: touchpoint.yaml first, the environment on top; workers by role."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from config.errors import ConfigurationError
from config.project import ProjectConfig
from config.settings import load_settings, time_scale_warning
from ops.workers import build_workers, worker_options
from simulation.recording import RecordingActivities
from tests.net import free_port

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")
SHOP = Path(__file__).parent / "fixtures" / "sms-shop"

CONFIG = ProjectConfig.model_validate(
    {
        "defaults": {"timezone": "Europe/Vienna", "locale": "de"},
        "temporal": {"address": "temporal.internal:7233", "namespace": "shop"},
        "worker": {"task_queue_prefix": "eu-", "rate_limits": {"email": 20}, "index_runs": False},
    }
)


def test_the_config_file_gives_the_defaults() -> None:
    settings = load_settings(CONFIG, environ={})
    assert (settings.address, settings.namespace) == ("temporal.internal:7233", "shop")
    assert settings.api_key is None and settings.tls_cert is None
    run = settings.run_settings()
    assert (run.default_timezone, run.default_locale, run.queue_prefix) == (
        "Europe/Vienna",
        "de",
        "eu-",
    )
    assert run.index_runs is False and run.time_scale == 1.0
    assert worker_options(settings).rate_limits == {"email": 20}


def test_the_environment_overrides_and_holds_the_secrets() -> None:
    settings = load_settings(
        CONFIG,
        environ={
            "TOUCHPOINT_TEMPORAL_ADDRESS": "shop.a1b2c.tmprl.cloud:7233",
            "TOUCHPOINT_TEMPORAL_NAMESPACE": "shop.a1b2c",
            "TOUCHPOINT_TEMPORAL_API_KEY": "key-from-the-vault",
            "TOUCHPOINT_TEMPORAL_TLS_CERT": "/etc/touchpoint/client.pem",
            "TOUCHPOINT_TEMPORAL_TLS_KEY": "/etc/touchpoint/client.key",
            "TOUCHPOINT_QUEUE_PREFIX": "blue-",
            "TOUCHPOINT_TIME_SCALE": "0.5",
        },
    )
    assert settings.address == "shop.a1b2c.tmprl.cloud:7233"
    assert settings.namespace == "shop.a1b2c"
    assert settings.api_key == "key-from-the-vault"
    assert settings.tls_cert == Path("/etc/touchpoint/client.pem")
    assert settings.run_settings().queue_prefix == "blue-"
    assert settings.run_settings().scaled(10) == 5


def test_the_config_has_no_place_for_temporal_secrets() -> None:
    fields = set(ProjectConfig.model_fields["temporal"].annotation.model_fields)  # type: ignore[union-attr]
    assert fields == {"address", "namespace"}


async def test_roles_split_workflows_from_activities(time_env: WorkflowEnvironment) -> None:
    options = worker_options(load_settings(CONFIG, environ={}))
    activities = RecordingActivities().all()
    workflows_only = build_workers(time_env.client, activities, options, "workflows")
    # a worker registers its queue on creation: each role needs queues of its own in this process
    activities_only = build_workers(
        time_env.client, activities, replace(options, queue_prefix="a-"), "activities"
    )
    everything = build_workers(time_env.client, activities, replace(options, queue_prefix="x-"))
    assert [w.task_queue for w in workflows_only] == ["eu-touchpoint-journeys"]
    # it has only the local profile read: taking the journey queue's sends, it would fail them
    assert workflows_only[0].config()["no_remote_activities"] is True
    assert everything[0].config()["no_remote_activities"] is False  # it runs them itself
    # the journey queue too: sends and lookups of channels without a rate limit are scheduled
    # there (eager dispatch when the journey worker runs them itself, as in role "all")
    assert sorted(w.task_queue for w in activities_only) == [
        "a-touchpoint-chat",
        "a-touchpoint-email",
        "a-touchpoint-journeys",
        "a-touchpoint-lookups",
        "a-touchpoint-sms",
        "a-touchpoint-webhook",
    ]
    assert len(everything) == 6  # the journey worker runs workflows and activities


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan", ""])
def test_a_time_scale_that_is_not_a_positive_number_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"TOUCHPOINT_TIME_SCALE=.* is not a positive"):
        load_settings(CONFIG, environ={"TOUCHPOINT_TIME_SCALE": value})


def test_a_stray_time_scale_is_said_out_loud(tmp_path: Path) -> None:
    assert time_scale_warning(load_settings(CONFIG, environ={})) is None
    scaled = load_settings(CONFIG, environ={"TOUCHPOINT_TIME_SCALE": "0.001"})
    assert time_scale_warning(scaled) == (
        "TOUCHPOINT_TIME_SCALE=0.001: every run started here waits 0.001× as long as its "
        "journey says (a day lasts 86.4 s) — for tests and demos only; unset it in production"
    )
    # the installed command says it before it starts anything (and refuses nonsense)
    env = {
        **os.environ,
        "TOUCHPOINT_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # nobody: exit 1 after 5 s
        "TOUCHPOINT_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "TOUCHPOINT_TIME_SCALE": "1e-3",
    }
    emit = [TOUCHPOINT, "emit", "Order Completed", "--customer", "c-1", "-C", str(SHOP)]
    result = subprocess.run(emit, env=env, capture_output=True, text=True, timeout=60)
    assert "warning: TOUCHPOINT_TIME_SCALE=0.001: every run started here" in result.stderr
    env["TOUCHPOINT_TIME_SCALE"] = "fast"
    result = subprocess.run(emit, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "TOUCHPOINT_TIME_SCALE='fast' is not a positive number" in result.stderr
