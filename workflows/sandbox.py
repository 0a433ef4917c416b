"""The workflow sandbox configuration every journey worker (and replayer) must use.

Workers pass the interpreter (``workflows.core`` and its shell ``workflows.journey``) through
the sandbox like the deterministic helper modules it uses (see ``PASSED_THROUGH``): it is loaded
once per worker, not once per run. Loading it afresh in the sandbox for every new run cost about
6 ms of worker CPU and 110 KiB of memory per cached run (BENCHMARKS.md, issue 13). That is safe
because the interpreter keeps no state outside its instances and reaches the clock, randomness
and I/O only through ``temporalio.workflow`` (the core through its host, the shell); the
sandbox's checks that enforce this rule run where the interpreter is *checked* instead of passed
through (``journey_workflow_runner(checked=True)``): the replay of every recorded history, and
the tests that ask for it. A non-deterministic call added to the interpreter fails those replays
in CI.

Jinja2 compiles expressions to Python code that imports ``jinja2.runtime`` when it runs; inside
the sandbox that import would load a second, restricted copy of Jinja2. Passing Jinja2 and
MarkupSafe through makes the workflow use the worker's own (deterministic, side-effect free)
modules.
"""

from __future__ import annotations

import dataclasses

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

INTERPRETER = ("workflows.core", "workflows.journey")  # the core and its Temporal shell

PASSED_THROUGH = (
    "jinja2",
    "markupsafe",
    "babel",
    # The interpreter's pure helper modules, by name: loaded once per worker, not once per run
    # (a quarter of a short run's cost), and their caches (compiled expressions) stay warm.
    # Nothing else of Touchpoint's is passed through unchecked.
    "workflows.analytics",
    "workflows.broadcast_models",  # the worker's analytics recorder: one per process
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


def journey_workflow_runner(*, checked: bool = False) -> SandboxedWorkflowRunner:
    """The sandbox, with Jinja2 passed through and ``zoneinfo.ZoneInfo`` usable.

    ``checked=False`` (workers): the interpreter is passed through too, loaded once per process.
    ``checked=True`` (the replay corpus, tests): the interpreter is loaded into the sandbox for
    each run, under the sandbox's restrictions, so a non-deterministic call in it fails.

    The default restrictions wrap ``ZoneInfo`` in a proxy (to forbid ``from_file`` and cache
    resets), and a proxied zone is not a ``tzinfo`` that ``datetime`` accepts. Zone lookups by
    name are deterministic for a given tzdata, so the workflow may use them.
    """
    modules = PASSED_THROUGH if checked else (*PASSED_THROUGH, *INTERPRETER)
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*modules)
    members = restrictions.invalid_module_members.with_child_unrestricted("zoneinfo", "ZoneInfo")
    restrictions = dataclasses.replace(restrictions, invalid_module_members=members)
    return SandboxedWorkflowRunner(restrictions=restrictions)
