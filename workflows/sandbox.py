"""The workflow sandbox configuration every journey worker (and replayer) must use.

Jinja2 compiles expressions to Python code that imports ``jinja2.runtime`` when it runs; inside
the sandbox that import would load a second, restricted copy of Jinja2. Passing Jinja2 and
MarkupSafe through makes the workflow use the worker's own (deterministic, side-effect free)
modules.
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSED_THROUGH = ("jinja2", "markupsafe")


def journey_workflow_runner() -> SandboxedWorkflowRunner:
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
    return SandboxedWorkflowRunner(restrictions=restrictions)
