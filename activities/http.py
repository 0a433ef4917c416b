"""The one pooled HTTP client a worker uses for webhooks, chat and lookups."""

from __future__ import annotations

import httpx

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
USER_AGENT = "Touchpoint/0.1 (+https://touchpoint.dev)"


def make_client(timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> httpx.AsyncClient:
    """Explicit timeouts, no redirects (a 3xx is an answer, not an invitation), pooled."""
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )
