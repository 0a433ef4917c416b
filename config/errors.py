"""Mistakes an operator can fix, reported as one line: ``✗ <what is wrong>; <what to do>``.

The CLI and ``worker.py`` print a :class:`UserError` on stderr and exit 1, without a traceback:
it is not a bug. Anything else that escapes is a crash (exit 3, traceback).

::

    UserError                  the setup is wrong, or a service it names is not there
    ├── ProjectInvalid         journeys, templates or touchpoint.yaml have problems (validator)
    ├── ConfigurationError     settings that cannot work: a TLS certificate without its key, …
    │   └── MissingEnvironment variables the configuration needs are not set
    ├── TemporalUnreachable    nothing answers at the Temporal address, after a short retry
    ├── StoreUnavailable       the database cannot be created, opened or written, or has no driver
    ├── PortInUse              ``touchpoint dev``: a port it needs is taken
    ├── NoSuchRun              no run with that workflow id
    ├── ProfileTooLarge        a change would pass a profile's size cap (store.profiles)
    ├── NotDeployed            no journey with that id has been deployed (store.deployments)
    └── PreviewError           preview, send-test: no such journey or step (ops.messaging)

The split that matters: "could not talk to it" (Temporal, the database — start it, or point
the address elsewhere) vs "the setup is wrong" (change it first).
"""

from __future__ import annotations


class UserError(Exception):
    """Printed as ``✗ message`` on stderr, exit 1; the message names the object and the fix."""


class ConfigurationError(UserError):
    """Settings that cannot work as given."""


class MissingEnvironment(ConfigurationError):
    """Environment variables the configuration needs are not set (or not usable)."""


class TemporalUnreachable(UserError):
    """No Temporal server answers at the configured address."""


class StoreUnavailable(UserError):
    """Touchpoint's database cannot be created, opened or written."""


class PortInUse(UserError):
    """A port ``touchpoint dev`` needs is taken by another process."""


class NoSuchRun(UserError):
    """No run has this workflow id (or, for cancel, it has already ended)."""


class NotDeployed(UserError):
    """No journey with this id has been deployed (``touchpoint journeys``)."""
