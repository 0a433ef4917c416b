"""How Touchpoint's programs end (``touchpoint``, ``worker.py``): the exit-code contract in one
place.

0 success; 1 a mistake the user can fix — a :class:`~config.errors.UserError` or a
``SystemExit("message")`` — printed as one line on stderr, no traceback; 2 bad command-line
usage (Click and argparse say why); 130 interrupted; 3 an unexpected crash: a traceback without
local variables (so no secret reaches the terminal) and a request to report it.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

import typer

from config.errors import UserError


def exit_code(program: str, main: Callable[[], object]) -> int:
    """Run ``main`` and say how it ended, as the contract above; prints what the user must see."""
    try:
        main()
    except UserError as error:
        return refuse(str(error))
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        return refuse(str(stop.code))
    except KeyboardInterrupt:
        typer.echo("\ninterrupted", err=True)
        return 130
    except Exception:
        typer.echo(f"{program} crashed; this is a bug, please report it:", err=True)
        typer.echo(traceback.format_exc(), err=True)
        return 3
    return 0


def refuse(message: str) -> int:
    """Print a user error as ``✗ message`` on stderr; its exit code, 1."""
    typer.secho(f"✗ {message}", fg="red", err=True)
    return 1


def leave(code: int) -> NoReturn:
    """Exit with ``code`` now, without interpreter teardown.

    Temporal's native runtime can abort (SIGABRT) when Python tears it down at exit after its
    event loop has closed; by then every result is printed and committed, so skip teardown.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
