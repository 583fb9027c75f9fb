"""The runtime's wire protocol: the only definition of every message.

`python -m model_runtime serve` reads requests from stdin and writes events to stdout, one JSON
object per line (UTF-8, newline-delimited). Logs go to stderr. End of stdin means shut down.
This module uses the standard library only, so the Blender extension loads the very same file.

Requests carry ``type`` and a client-chosen ``id`` (a string, a whole number or null); every
event carries ``event`` and the ``id``
of the request it answers (``null`` for ``ready``). One job (capture, reconstruct,
capture_reconstruct) runs at a time; ``cancel`` stops it within one frame and leaves a
resumable capture; ``health`` and ``cancel`` are answered while a job runs.

Requests (fields beyond ``type`` and ``id``; the options are optional, and each one's name,
type, choices, default and meaning is declared once in ``option_schema.py``):

    health
    capture              input, output (paths), and the capture options
    reconstruct          capture_dir (a path), and the reconstruct options
    capture_reconstruct  input, output, and both sets of options (capture_dir = output)
    export               capture_dir, and the export options (files to write from its reconstruction)
    cancel
    shutdown

A request that is not one JSON object per line in UTF-8, has unknown or missing fields, or a
value the schema refuses is answered with ``error`` code ``bad_request`` (message and hint say
which field and what to write); the server keeps answering.

Events:

    ready       version                               once, when the server starts
    health      version, python, backends, devices, packages
    started     stage, total, [capture_dir]           a job's stage began ("capture", "reconstruct", "export");
                                                      total is null when not yet known
    progress    stage, done, total, fps, eta_s        at most a few times a second
    warning     code, message, [frame]                per-frame problems (no face, unreadable frame)
    finished    stage, summary                        a stage ended; summary is a dict
    cancelled   stage, done                           the job stopped on request after `done` frames;
                                                      work so far is kept
    error       code, message, hint                   the job failed; nothing after it for that id
"""
from __future__ import annotations

import json
import math

from .errors import UserError
from .option_schema import CAPTURE, EXPORT, RECONSTRUCT, options_for, validate

PROTOCOL_VERSION = 2

JOB_STAGES: dict[str, tuple[str, ...]] = {
    "capture": (CAPTURE,),
    "reconstruct": (RECONSTRUCT,),
    "capture_reconstruct": (CAPTURE, RECONSTRUCT),
    "export": (EXPORT,),
}
"""Each job type and the option stages it takes."""
PATH_FIELDS: dict[str, tuple[str, ...]] = {
    "health": (), "capture": ("input", "output"), "reconstruct": ("capture_dir",),
    "capture_reconstruct": ("input", "output"), "export": ("capture_dir",), "cancel": (), "shutdown": (),
}
REQUEST_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    kind: (paths, tuple(option.name for option in options_for(*JOB_STAGES.get(kind, ()))))
    for kind, paths in PATH_FIELDS.items()
}
"""type: (required fields, optional fields)."""
JOB_TYPES = tuple(JOB_STAGES)

EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "ready": ("version",),
    "health": ("version", "python", "backends", "devices", "packages"),
    "started": ("stage", "total"),
    "progress": ("stage", "done", "total", "fps", "eta_s"),
    "warning": ("code", "message"),
    "finished": ("stage", "summary"),
    "cancelled": ("stage", "done"),
    "error": ("code", "message", "hint"),
}


class ProtocolError(ValueError):
    """A line that is not a valid request; `hint` says what to send instead."""

    def __init__(self, message: str, hint: str = "See model_runtime/protocol.py and option_schema.py."):
        super().__init__(message)
        self.hint = hint


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def parse_request(line: str | bytes) -> dict:
    """Decode and validate one request line; option values come back as the schema normalises them."""
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        message = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"not a UTF-8 JSON line: {str(exc)[:200]}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a request must be a JSON object")
    kind = message.get("type")
    if kind not in REQUEST_FIELDS:
        raise ProtocolError(f"unknown request type {kind!r}; known: {', '.join(REQUEST_FIELDS)}")
    if not (message.get("id") is None or isinstance(message["id"], str) or type(message["id"]) is int):
        raise ProtocolError(f"request id {message['id']!r} is not a string, a whole number or null")
    required, optional = REQUEST_FIELDS[kind]
    missing = [name for name in required if message.get(name) in (None, "")]
    if missing:
        raise ProtocolError(f"{kind} request lacks {', '.join(missing)}")
    wrong = [name for name in required if not isinstance(message[name], str)]
    if wrong:
        raise ProtocolError(f"{kind} request: {', '.join(wrong)} must be a path (a string)")
    unknown = set(message) - set(required) - set(optional) - {"type", "id"}
    if unknown:
        raise ProtocolError(f"{kind} request has unknown fields: {', '.join(sorted(unknown))}")
    if kind in JOB_STAGES:
        try:
            options = validate({name: message[name] for name in optional if name in message}, JOB_STAGES[kind])
        except UserError as exc:
            raise ProtocolError(exc.message, exc.hint) from None
        message = {**{name: message[name] for name in ("type", "id", *required) if name in message}, **options}
    return message


def request_id_of(line: str | bytes):
    """The id of a request line that failed to parse, when it can be read (else None)."""
    try:
        message = json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError, TypeError):
        return None
    candidate = message.get("id") if isinstance(message, dict) else None
    return candidate if candidate is None or isinstance(candidate, str) or type(candidate) is int else None


def request(kind: str, request_id: str | None = None, **fields) -> str:
    """Encode a request line (used by clients and tests)."""
    line = encode({"type": kind, "id": request_id, **fields})
    parse_request(line)
    return line


def event(kind: str, request_id: str | None, **fields) -> dict:
    """Build an event, checking that it has the fields its kind promises."""
    missing = [name for name in EVENT_FIELDS[kind] if name not in fields]
    if missing:
        raise ValueError(f"{kind} event lacks {', '.join(missing)}")
    return {"event": kind, "id": request_id, **fields}


def encode(message: dict) -> str:
    return json.dumps(_finite(message), ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


def _finite(value):
    """NaN and infinities (not JSON) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def decode_event(line: str) -> dict:
    message = json.loads(line)
    if not isinstance(message, dict) or message.get("event") not in EVENT_FIELDS:
        raise ProtocolError(f"not an event: {line[:200]!r}")
    return message
