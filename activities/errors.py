"""How delivery failures are classified, so Temporal retries what can succeed later.

::

    ApplicationError (Temporal)
    ├── retryable       the provider is down, slow, or asks us to come back (429, 5xx, timeout,
    │                   connection refused): retried with backoff, honouring Retry-After
    └── non-retryable   the provider said no for good (400, 401, 403, 404, 410, a template that
                        cannot render): fails the step at once; the journey decides what next

The ``type`` names the reason for people and dashboards (``RateLimited``, ``ProviderError``,
``Rejected``, ``RecipientUnreachable``, ``RenderError``, ``Misconfigured``, ``InFlight``).

A retryable failure is expected — a provider's bad minute, another attempt holding the
message — so it is ``BENIGN``: the SDK logs it at DEBUG, not as a warning with a traceback, and
the worker logs one warning line for it instead (:class:`ops.workers.ExpectedRetries`).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

MAX_RETRY_AFTER = timedelta(hours=1)


def retryable(
    message: str, kind: str = "ProviderError", retry_after: float | None = None
) -> ApplicationError:
    """A failure worth retrying; ``retry_after`` (seconds) is the provider's own pause."""
    delay = None
    if retry_after is not None and retry_after > 0:
        delay = min(timedelta(seconds=retry_after), MAX_RETRY_AFTER)
    return ApplicationError(
        message, type=kind, next_retry_delay=delay, category=ApplicationErrorCategory.BENIGN
    )


def permanent(message: str, kind: str = "Rejected") -> ApplicationError:
    """A failure no retry can fix."""
    return ApplicationError(message, type=kind, non_retryable=True)


def from_status(status: int, message: str, retry_after: float | None = None) -> ApplicationError:
    """Classify an HTTP answer that was not a success."""
    if status == 429:
        return retryable(f"rate limited: {message}", "RateLimited", retry_after)
    if status >= 500 or status in (408, 425):
        return retryable(f"provider error {status}: {message}", "ProviderError", retry_after)
    if status == 410:
        return permanent(f"gone (410): {message}", "RecipientUnreachable")
    return permanent(f"refused ({status}): {message}", "Rejected")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds form; HTTP dates are rare from APIs)."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None
