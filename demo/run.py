"""The README demo: Max's journeys, from the shop's side, on the real stack.

Starts ``touchpoint dev`` (Temporal, worker, API, dashboard), identifies Max over the
Segment-compatible API and replays what the shop would send: a newsletter subscription, laptop
views, a laptop order and its delivery. Then it shows his runs (current step, next wake-up), the
outbox and the dashboard's address, and keeps the stack running until Ctrl-C (``--once`` stops
at once, for tests).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")
MAX = {
    "userId": "max",
    "traits": {
        "email": "max@example.com",
        "first_name": "Max",
        "interests": ["laptops"],
        "email_opt_in": True,
    },
    "context": {"locale": "de-DE", "timezone": "Europe/Berlin"},
}
STAND_INS = {
    "SLACK_SUPPORT_WEBHOOK_URL": "https://hooks.slack.invalid/services/demo",
    "CRM_WEBHOOK_SECRET": "whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1jcm0=",
    "SHOP_API_TOKEN": "demo-shop-api-token",
}
"""The example shop's secrets (touchpoint.yaml references them; the worker and the API refuse to
start without them). Its Slack, CRM and shop API are fictional, and Max's story never reaches a
step that uses them; values you export win."""
LAPTOP = {"name": "Aero 14", "sku": "LAP-14", "price": 1299, "category": "laptops"}
EVENTS = [
    ("Newsletter Subscribed", {"list": "weekly"}),
    ("Product Category Viewed", {"category": "laptops"}),
    (
        "Order Completed",
        {
            "order_id": "O-1001",
            "total": 1299,
            "currency": "EUR",
            "categories": ["laptops"],
            "products": [LAPTOP],
        },
    ),
    ("Order Delivered", {"order_id": "O-1001"}),
]


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def run(*args: str, project: Path, env: dict[str, str]) -> str:
    return subprocess.run(
        [TOUCHPOINT, *args], cwd=project, env=env, capture_output=True, text=True, check=True
    ).stdout


def wait_ready(url: str, dev: subprocess.Popen[str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if dev.poll() is not None:  # it said why on stderr
            raise SystemExit(f"touchpoint dev stopped (exit {dev.returncode}); see above")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("the stack did not become ready; see .touchpoint/logs/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--temporal-port", type=int, default=7233)
    parser.add_argument("--ui-port", type=int, default=8233)
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--dashboard-port", type=int, default=8400, help="0: no dashboard")
    parser.add_argument("--metrics-port", type=int, default=9464, help="0: no worker metrics")
    parser.add_argument("--once", action="store_true", help="stop after showing the results")
    args = parser.parse_args()
    project = args.project.resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHPOINT_")}
    env = STAND_INS | env
    env["TOUCHPOINT_TEMPORAL_ADDRESS"] = f"127.0.0.1:{args.temporal_port}"
    api_url = f"http://127.0.0.1:{args.api_port}"

    say("Starting Temporal, the worker and the API (touchpoint dev)")
    dev = subprocess.Popen(
        [
            TOUCHPOINT,
            "dev",
            "--temporal-port",
            str(args.temporal_port),
            "--ui-port",
            str(args.ui_port),
            "--api-port",
            str(args.api_port),
            "--dashboard-port",
            str(args.dashboard_port),
            "--metrics-port",
            str(args.metrics_port),
            "-C",
            str(project),
        ],
        cwd=project,
        env=env,
        text=True,
    )
    try:
        wait_ready(api_url, dev)
        key = run("keys", "create", "demo-shop", project=project, env=env).strip()
        shop = httpx.Client(base_url=api_url, auth=(key, ""), timeout=10)
        say("The shop identifies Max and sends what he does")
        assert shop.post("/v1/identify", json=MAX).status_code == 200
        print("identify  max  (email, first name, interests: laptops, locale de-DE)")
        for name, properties in EVENTS:
            response = shop.post(
                "/v1/track",
                json={
                    "userId": "max",
                    "event": name,
                    "properties": properties,
                    "messageId": f"demo-{uuid.uuid4()}",
                },
            )
            print(f"track     {name:<24} {response.status_code}")
            time.sleep(1.5)
        time.sleep(3)
        say("Max's journey runs")
        listed = run("runs", "list", "--customer", "max", project=project, env=env)
        print(listed)
        for line in listed.splitlines()[1:]:  # under the header: one run a line, its id first
            print(run("runs", "show", line.split()[0], project=project, env=env))
        say("The emails in the outbox (.touchpoint/outbox)")
        print(run("outbox", project=project, env=env))
        say("Where to look next")
        if args.dashboard_port:
            print(f"Dashboard     http://127.0.0.1:{args.dashboard_port}  (Max's journeys, live)")
        if args.ui_port:
            print(f"Temporal UI   http://127.0.0.1:{args.ui_port}  (search: TouchpointCustomer)")
        print(f"API docs      {api_url}/docs")
        print("A run         touchpoint runs show <workflow id>")
        print("An email      touchpoint outbox <key>")
        if not args.once:
            print("\nThe stack keeps running; Ctrl-C stops it (state stays in .touchpoint/).")
            dev.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if dev.poll() is None:
            dev.send_signal(signal.SIGINT)
            dev.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
