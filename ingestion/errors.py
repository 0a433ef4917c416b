"""What the API answers when a request is wrong: a status, a sentence, and the fields at fault.

    BadRequest(status, message, errors)   400 invalid · 401 no key · 403 bad signature ·
                                          413 too large · 415 not JSON / unknown encoding ·
                                          503 try again later

``errors`` is a list of ``{"path": "batch[2].properties.items[0]", "message": "…"}``.
"""

from __future__ import annotations


class BadRequest(Exception):
    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors or []
