"""What the browser tests run on: the real stack for a copy of the example project, with the
demo's events in it, and Debian's Chromium driven by Playwright, cut off from the internet.

Chromium missing skips the browser tests outside CI and fails them under CI (``CI`` set, as
``.ci/run`` does, which installs it), like the PostgreSQL tests. ``playwright install`` is never
used: it downloads a browser of its own; Playwright drives the system's ``chromium``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from store.database import connect
from store.keys import WriteKeys
from tests.conftest import CI, EXAMPLE_SECRETS, ROOT
from tests.net import free_port

T = TypeVar("T")
TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOOPBACK = "127.0.0.1"
DASHBOARD_SECRET = "browser-test-dashboard-secret-0123456789"


def chromium() -> str:
    """The system's Chromium (and Playwright to drive it), or skip — fail under CI."""
    missing = None
    path = shutil.which("chromium")
    if path is None:
        missing = "chromium is not on PATH (apt-get install chromium)"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            missing = "Playwright is not installed (pip install -e '.[dev]')"
    if missing is not None:
        if CI:
            pytest.fail(f"{missing}; CI runs the browser tests", pytrace=False)
        pytest.skip(f"{missing} (CI runs these)")
    assert path is not None
    return path


# --- the stack ------------------------------------------------------------------------------


@dataclass
class Stack:
    """``touchpoint dev`` (Temporal, worker, API) and a ``touchpoint dashboard`` with a login,
    for ``project``; both read and write the store at ``database_url``."""

    project: Path
    temporal_address: str
    api: str
    dashboard: str
    database_url: str
    logs: Path
    sendgrid_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    write_key: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def shop(self) -> httpx.Client:
        """The shop's side of the API (Segment-compatible), with a write key made as
        ``touchpoint keys create`` makes one (in this process: a CLI start costs seconds)."""
        if not self.write_key:
            engine = connect(self.database_url)
            try:
                self.write_key = WriteKeys(engine).create("browser-test")
            finally:
                engine.dispose()
        return httpx.Client(base_url=self.api, auth=(self.write_key, ""), timeout=10)

    def sendgrid_public_key(self) -> str:
        """The Event Webhook's verification key, as SendGrid shows it (base64 DER)."""
        der = self.sendgrid_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def sendgrid_posts(self, events: list[dict[str, Any]]) -> None:
        """``events`` posted to the API as SendGrid's signed Event Webhook posts them."""
        body = json.dumps(events).encode()
        timestamp = str(int(time.time()))
        signature = self.sendgrid_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        answer = httpx.post(
            f"{self.api}/webhooks/sendgrid",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            },
            timeout=10,
        )
        assert answer.status_code == 200, answer.text

    def log_tails(self) -> str:
        """The end of every log of the stack: what a failure to start shows."""
        tails = []
        for log in sorted(self.logs.rglob("*.log")):
            tails.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(tails)


def copy_of_the_example(into: Path) -> Path:
    project = into / "shop"
    project.mkdir()
    for name in ("touchpoint.yaml", "journeys", "templates"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / name)
    return project


@contextmanager
def running_stack(project: Path, meanwhile: Callable[[Stack], None]) -> Iterator[Stack]:
    """The stack on free ports, ``meanwhile`` run once the API is ready (while the dashboard
    starts); stopped, every process of it, when the block ends."""
    temporal, api, dashboard = free_port(), free_port(), free_port()
    state = project / ".touchpoint"
    logs = project.parent / "logs"
    logs.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHPOINT_")}
    env |= EXAMPLE_SECRETS
    env |= {
        "TOUCHPOINT_TEMPORAL_ADDRESS": f"{LOOPBACK}:{temporal}",
        "TOUCHPOINT_DATABASE_URL": f"sqlite:///{state / 'touchpoint.db'}",
    }
    stack = Stack(
        project=project,
        temporal_address=env["TOUCHPOINT_TEMPORAL_ADDRESS"],
        api=f"http://{LOOPBACK}:{api}",
        dashboard=f"http://{LOOPBACK}:{dashboard}",
        database_url=env["TOUCHPOINT_DATABASE_URL"],
        logs=logs,
    )
    env["SENDGRID_WEBHOOK_PUBLIC_KEY"] = stack.sendgrid_public_key()
    try:
        with (logs / "dev.log").open("ab") as dev_log:
            stack.processes.append(
                _start(
                    [
                        *[TOUCHPOINT, "dev", "--temporal-port", str(temporal), "--ui-port", "0"],
                        *["--api-port", str(api), "--dashboard-port", "0", "-C", str(project)],
                    ],
                    project,
                    env,
                    dev_log,
                )
            )
        _wait_until_ok(f"{stack.api}/readyz", stack, seconds=90)
        with (logs / "dashboard.log").open("ab") as dashboard_log:
            stack.processes.append(
                _start(
                    [
                        *[TOUCHPOINT, "dashboard", "--host", LOOPBACK, "--port", str(dashboard)],
                        *["-C", str(project)],
                    ],
                    project,
                    env | {"TOUCHPOINT_DASHBOARD_SECRET": DASHBOARD_SECRET},
                    dashboard_log,
                )
            )
        meanwhile(stack)
        _wait_until_ok(f"{stack.dashboard}/healthz", stack, seconds=60)
        yield stack
    finally:
        _stop(stack.processes)


def _start(
    command: list[str], project: Path, env: dict[str, str], log: IO[bytes]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its children (Temporal, worker, API) stop with it
    )


def _wait_until_ok(url: str, stack: Stack, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for process in stack.processes:
            if process.poll() is not None:
                raise AssertionError(
                    f"{process.args[1]} exited (code {process.returncode}) before {url} "
                    f"answered\n{stack.log_tails()}"
                )
        with suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 in {seconds:.0f} s\n{stack.log_tails()}")


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT (``touchpoint dev`` stops its children in order), then SIGKILL to whatever of
    them and their children still runs after 30 s (``touchpoint dev`` starts each child in a
    session of its own, so they are found by parent): nothing is left behind."""
    family = [child for process in processes for child in _descendants(process.pid)]
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in reversed(processes):
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for pid, started in family:
        if _processes().get(pid, (None, None))[1] == started:  # the same process, still there
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[tuple[int, str]]:
    """The processes started by ``pid`` and by those (their ids and start times)."""
    table = _processes()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [(child, started) for child, (ppid, started) in table.items() if ppid == parent]
        found += children
        frontier += [child for child, _ in children]
    return found


def _processes() -> dict[int, tuple[int, str]]:
    """Every process now, as Linux's /proc has it: id → (parent id, start time)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            table[int(stat.parent.name)] = (int(fields[1]), fields[19])
    return table


def send_the_demo_s_events(stack: Stack) -> None:
    """What ``demo/run.py`` sends (its Max and its events, at its pace: each event's runs start
    before the next arrives, so the order converts the laptop recommendation)."""
    from demo.run import EVENTS, MAX

    with stack.shop() as shop:
        answer = shop.post("/v1/identify", json=MAX)
        assert answer.status_code == 200, answer.text
        for number, (name, properties) in enumerate(EVENTS):
            answer = shop.post(
                "/v1/track",
                json={
                    "userId": MAX["userId"],
                    "event": name,
                    "properties": properties,
                    "messageId": f"browser-demo-{number}",
                },
            )
            assert answer.status_code == 200, answer.text
            time.sleep(1.5)


def in_a_thread(call: Callable[[], T]) -> T:
    """``call`` on a thread of its own: Playwright's sync API holds this thread's event loop,
    and the Temporal client is asyncio."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result(timeout=60)


def running_runs(temporal_address: str, journey_id: str) -> int:
    """Temporal's count of the running runs of ``journey_id``."""

    async def count() -> int:
        from temporalio.client import Client

        client = await Client.connect(temporal_address)
        query = f'TouchpointJourney = "{journey_id}" AND ExecutionStatus = "Running"'
        return (await client.count_workflows(query)).count

    return in_a_thread(lambda: asyncio.run(count()))


def timeline_steps(temporal_address: str, workflow_ids: list[str]) -> dict[str, list[str]]:
    """Each run's timeline (the steps of its entries, in order), from its ``state`` query."""

    async def ask() -> dict[str, list[str]]:
        from temporalio.client import Client
        from temporalio.contrib.pydantic import pydantic_data_converter

        from workflows.models import RunView

        client = await Client.connect(temporal_address, data_converter=pydantic_data_converter)
        steps = {}
        for workflow_id in workflow_ids:
            state = await client.get_workflow_handle(workflow_id).query("state")
            steps[workflow_id] = [e.step for e in RunView.model_validate(state).timeline]
        return steps

    return in_a_thread(lambda: asyncio.run(ask()))


# --- the browser ----------------------------------------------------------------------------


@dataclass
class Watch:
    """What pages did that they must not: ask for anything outside 127.0.0.1 (blocked),
    throw, log an error (a CSP violation is one), open a dialog."""

    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def attach(self, context: Any) -> None:
        context.route("**/*", self._route)
        context.on("page", self._page)

    def _route(self, route: Any) -> None:
        if urlsplit(route.request.url).hostname == LOOPBACK:
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def _page(self, page: Any) -> None:
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"{page.url}: console: {message.text}")
                if message.type == "error"
                else None
            ),
        )
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def forgive(self, status: int) -> None:
        """The browser's console line for an answer with ``status`` that the test caused."""
        self.errors[:] = [e for e in self.errors if f"with a status of {status} " not in e]

    def clear(self) -> None:
        self.outside.clear()
        self.errors.clear()
        self.dialogs.clear()

    def problems(self) -> list[str]:
        return (
            [f"asked for a URL outside 127.0.0.1: {url}" for url in self.outside]
            + [f"error: {error}" for error in self.errors]
            + [f"a dialog opened: {dialog}" for dialog in self.dialogs]
        )


@contextmanager
def chromium_browser(executable: str) -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


VIEWPORT = {"width": 1280, "height": 900}


def new_context(browser: Any, watch: Watch) -> Any:
    """A fresh profile (no cookies), 1280x900, watched."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    watch.attach(context)
    return context


def save_screenshot(page: Any, name: str, into: Path) -> Path:
    """``name``.png of what the page shows into ``into``, and into env ``SAVE_SCREENSHOTS``'s
    folder when set."""
    shot = into / f"{name}.png"
    page.screenshot(path=str(shot))
    if folder := os.environ.get("SAVE_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)
    return shot
