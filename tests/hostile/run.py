"""Run the hostile cases of ``tests/hostile/*.yaml``, each in a child process of its own with a
memory limit and a wall-clock timeout; print one JSON line per case.

    python -m tests.hostile.run templates      # through the renderer, as a send activity does
    python -m tests.hostile.run expressions    # through the evaluator, as the workflow does

This process imports everything once and forks a child per case: the child limits its address
space (``RLIMIT_AS``: what it had plus :data:`MEMORY_MB`), runs the case and reports how it
ended and how long it took (wall clock and CPU time: other processes may share the CPU); the
parent kills it after :data:`TIMEOUT_SECONDS`. A case that
crashes the process, runs out of memory or time is reported as such, not as an error message.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import select
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
MEMORY_MB = 512
TIMEOUT_SECONDS = 30
CHANNELS = {"html": "email", "md": "chat", "json": "webhook"}
PROFILE = {
    "id": "cus_1",
    "email": "max@example.com",
    "locale": "en",
    "timezone": "Europe/Berlin",
    "traits": {"first_name": "Max", "interests": ["laptops"], "plan": "pro"},
}
EVENT = {
    "event": "Order Completed",
    "properties": {"order_id": "O-1", "total": 1299, "items": [{"sku": "a", "price": 1299}]},
    "timestamp": "2026-05-02T14:30:00+00:00",
    "message_id": "evt_1",
}
LOOKUPS = {"picks": {"products": [{"name": f"p{i}", "price": i} for i in range(200)]}}


def load(kind: str) -> list[dict[str, Any]]:
    cases = yaml.safe_load((HERE / f"{kind}.yaml").read_text(encoding="utf-8"))
    assert isinstance(cases, list)
    return cases


def template_runner(cases: list[dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    from activities.rendering import Renderer
    from workflows.models import Profile, SendRequest

    root = Path(tempfile.mkdtemp(prefix="hostile-")) / "templates"
    for case in cases:
        kind = case.get("file", "html")
        text = case["template"]
        if kind == "html":
            text = f"---\nsubject: hostile\n---\n<p>\n{text}\n</p>\n"
        folder = root / case["name"]
        folder.mkdir(parents=True)
        (folder / f"en.{kind}").write_text(text, encoding="utf-8")
    renderer = Renderer(root, "en")

    def run(case: dict[str, Any]) -> dict[str, Any]:
        kind = case.get("file", "html")
        request = SendRequest(
            message_id="msg_hostile",
            journey_id="hostile",
            journey_version="v1",
            category="transactional",
            step_id="step-1",
            channel=CHANNELS[kind],
            template=case["name"],
            customer_id="cus_1",
            profile=Profile.model_validate(PROFILE),
            context={"event": EVENT, "lookups": LOOKUPS, "now": "2026-05-02T14:30:00+00:00"},
        )
        started, cpu = time.monotonic(), time.process_time()
        try:
            asyncio.run(renderer.render_async(request))
        except Exception as error:
            return {
                "outcome": "error",
                "seconds": time.monotonic() - started,
                "cpu": time.process_time() - cpu,
                "type": getattr(error, "type", type(error).__name__),
                "non_retryable": getattr(error, "non_retryable", None),
                "message": getattr(error, "message", str(error)),
            }
        return {"outcome": "rendered", "seconds": time.monotonic() - started}

    return run


def expression_runner(cases: list[dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    from workflows import evaluation

    names = {
        "profile": PROFILE,
        "event": EVENT,
        "events": {},
        "vars": {},
        "lookups": LOOKUPS,
        "now": datetime(2026, 5, 2, 14, 30, tzinfo=UTC),
    }
    evaluation.evaluate("1", names)  # load Jinja2 before the clock starts

    def run(case: dict[str, Any]) -> dict[str, Any]:
        started, cpu = time.monotonic(), time.process_time()
        try:
            if "text" in case:  # a lookup's path, query or body
                evaluation.render_text(case["text"], names)
            else:
                evaluation.evaluate(case["expression"], names)
        except Exception as error:
            return {
                "outcome": "error",
                "seconds": time.monotonic() - started,
                "cpu": time.process_time() - cpu,
                "type": type(error).__name__,
                "message": str(error),
            }
        return {"outcome": "evaluated", "seconds": time.monotonic() - started}

    return run


def in_child(
    run: Callable[[dict[str, Any]], dict[str, Any]], case: dict[str, Any]
) -> dict[str, Any]:
    """Run ``case`` in a forked child under the memory limit and the timeout."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        code = 0
        try:
            limit = _virtual_memory() + MEMORY_MB * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            result = run(case)
        except BaseException as error:  # MemoryError included
            result = {"outcome": "failed", "message": f"{type(error).__name__}: {error}"}
            code = 1
        with os.fdopen(write_end, "w") as pipe:
            pipe.write(json.dumps(result))
        os._exit(code)
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], TIMEOUT_SECONDS)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)
        return {"outcome": "timeout", "message": f"still running after {TIMEOUT_SECONDS} s"}
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return {"outcome": "crashed", "message": f"the process died of {name}"}
    return json.loads(text) if text else {"outcome": "crashed", "message": "no result"}


def _virtual_memory() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def main(kind: str) -> None:
    cases = load(kind)
    runner = template_runner(cases) if kind == "templates" else expression_runner(cases)
    for case in cases:
        result = in_child(runner, case)
        print(json.dumps({"name": case["name"], **result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
