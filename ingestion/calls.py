"""Reading Segment calls out of JSON documents — the API's bodies, a batch's items, the lines
of a ``touchpoint emit --file`` — the same way everywhere: shape limits first
(:func:`ingestion.body.check_shape`), then the call's model (:mod:`ingestion.segment`), every
problem a :class:`~ingestion.errors.BadRequest` naming the field (``batch[3].event``)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from ingestion.body import check_shape
from ingestion.errors import BadRequest
from ingestion.segment import CALL_MODELS, MAX_CALL_BYTES, BatchItem, Ingest, SegmentCall


def read_call(kind: str, document: Any, prefix: str = "") -> SegmentCall:
    """A call of a known ``kind`` (the endpoint says which)."""
    check_shape(document, prefix)
    call: SegmentCall = validate(CALL_MODELS[kind], document, prefix)
    return call


def read_typed_call(
    item: Any, context: dict[str, Any] | None = None, prefix: str = ""
) -> tuple[str, Ingest]:
    """A call that says its own ``type`` (a batch item, a line of a calls file), checked on its
    own: type, size and shape, with ``context`` (the batch's) under the call's own."""
    where = prefix or "(call)"
    if not isinstance(item, dict):
        raise BadRequest(
            400, f"{where} must be a JSON object", [field_error(where, "not an object")]
        )
    if len(json.dumps(item, ensure_ascii=False).encode()) > MAX_CALL_BYTES:
        message = f"larger than {MAX_CALL_BYTES // 1024} KB"
        raise BadRequest(413, f"{where}: {message}", [field_error(where, message)])
    kind = validate(BatchItem, item, prefix).type
    own = item.get("context")
    merged = {**(context or {}), **own} if isinstance(own, dict) else (context or {})
    return kind, read_call(kind, {**item, "context": merged} if merged else item, prefix).ingest()


def field_error(path: str, message: str) -> dict[str, str]:
    return {"path": path, "message": message}


def validate(model: type[Any], body: Any, prefix: str = "") -> Any:
    if not isinstance(body, dict):
        raise BadRequest(400, f"{prefix or 'the body'} must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as failure:
        errors = [field_error(field_path(prefix, d["loc"]), d["msg"]) for d in failure.errors()]
        raise BadRequest(
            400, "; ".join(f"{e['path']}: {e['message']}" for e in errors), errors
        ) from None


def field_path(prefix: str, loc: tuple[Any, ...]) -> str:
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(body)"
