"""The layout keeps its promises: ``workflows/`` holds only what the sandbox runs, the sandbox
passes through named pure modules only, and every registered channel is complete."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from workflows.channels import CHANNELS
from workflows.sandbox import PASSED_THROUGH

NEVER_IN_A_WORKFLOW = (
    "yaml",
    "language.compiler",
    "language.validator",
    "jinja2.loaders",
    "httpx",
    "sqlalchemy",
    "fastapi",
    "activities",
    "store",
)


@pytest.mark.parametrize("module", ["workflows.journey", "workflows.privacy"])
def test_importing_the_workflow_loads_no_yaml_compiler_files_network_or_database(
    module: str,
) -> None:
    """In a fresh interpreter: what importing a workflow module brings along."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = set(
        json.loads(
            subprocess.run(
                [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout
        )
    )
    assert [name for name in NEVER_IN_A_WORKFLOW if name in loaded] == []
    ours = {m.split(".")[0] for m in loaded} & {"workflows", "language", "config", "ops"}
    assert ours == {"workflows"}


def test_the_sandbox_passes_through_named_modules_only() -> None:
    ours = [name for name in PASSED_THROUGH if name.startswith("workflows")]
    assert "workflows" not in PASSED_THROUGH and "language" not in PASSED_THROUGH
    for name in ours:  # each names a module of workflows/, not a package
        module = importlib.import_module(name)
        assert module.__file__ is not None and not module.__file__.endswith("__init__.py")


def test_every_channel_is_complete() -> None:
    """A channel's declaration names a sender that prepares and delivers, template files its
    form can render, and a queue and activity of its own."""
    queues = {c.queue for c in CHANNELS.values()}
    activities = {c.activity for c in CHANNELS.values()}
    assert len(queues) == len(activities) == len(CHANNELS)
    for channel in CHANNELS.values():
        sender = channel.sender_class()
        assert callable(sender.prepare) and callable(sender.deliver), channel.name
        assert channel.files, channel.name
        if channel.form == "json":
            assert channel.files == ("json",)
        if channel.recipient == "destination":
            assert channel.destination_types, channel.name
        model = channel.settings_model()
        assert model is None or model.model_validate({}) is not None
