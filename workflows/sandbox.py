"""The workflow sandbox configuration every journey worker (and replayer) must use.

Only ``workflows.journey`` itself is loaded afresh for each run, under the sandbox's checks;
the deterministic helper modules it uses are passed through (see ``PASSED_THROUGH``).

Jinja2 compiles expressions to Python code that imports ``jinja2.runtime`` when it runs; inside
the sandbox that import would load a second, restricted copy of Jinja2. Passing Jinja2 and
MarkupSafe through makes the workflow use the worker's own (deterministic, side-effect free)
modules.
"""

from __future__ import annotations

import dataclasses

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSED_THROUGH = (
    "jinja2",
    "markupsafe",
    "babel",
    # The interpreter's pure helper modules, by name: loaded once per worker, not once per run
    # (a quarter of a short run's cost), and their caches (compiled expressions) stay warm.
    # Nothing else of Touchpoint's is passed through unchecked.
    "workflows.channels",
    "workflows.durations",
    "workflows.evaluation",
    "workflows.jinja_limits",
    "workflows.jinja_rewrite",
    "workflows.jinja_sandbox",
    "workflows.lookup_paths",
    "workflows.limits",  # the budget of the evaluation in progress: a context variable
    "workflows.models",
    "workflows.plan",
    "workflows.privacy_models",
    "workflows.registry",  # the worker's plans and settings: one registry per process
    "workflows.search",
    "workflows.timing",
)


def journey_workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox, with Jinja2 passed through and ``zoneinfo.ZoneInfo`` usable.

    The default restrictions wrap ``ZoneInfo`` in a proxy (to forbid ``from_file`` and cache
    resets), and a proxied zone is not a ``tzinfo`` that ``datetime`` accepts. Zone lookups by
    name are deterministic for a given tzdata, so the workflow may use them.
    """
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
    members = restrictions.invalid_module_members.with_child_unrestricted("zoneinfo", "ZoneInfo")
    restrictions = dataclasses.replace(restrictions, invalid_module_members=members)
    return SandboxedWorkflowRunner(restrictions=restrictions)
