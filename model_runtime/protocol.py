"""The runtime's wire protocol: the only definition of every message.

`python -m model_runtime serve` reads requests from stdin and writes events to stdout, one JSON
object per line (UTF-8, newline-delimited). Logs go to stderr. End of stdin means shut down.
This module uses the standard library only, so the Blender extension loads the very same file.

Requests carry ``type`` and a client-chosen ``id``; every event carries ``event`` and the ``id``
of the request it answers (``null`` for ``ready``). One job (capture, reconstruct,
capture_reconstruct) runs at a time; ``cancel`` stops it within one frame and leaves a
resumable capture; ``health`` and ``cancel`` are answered while a job runs.

Requests (fields beyond ``type`` and ``id``; optional ones in brackets):

    health
    capture              input, output, [frames "A:B[:S]"], [focal "35mm" | "1200px"],
                         [backend], [device "auto"|"cpu"|"cuda"], [checkpoint], [backend_options {}],
                         [overwrite]
    reconstruct          capture_dir, [mesh "template"|"dense"], [density "low"|"medium"|"high"],
                         [smooth "off"|"on" or a filter name], [points [[x, y, z] | "name", ...]]
    capture_reconstruct  the fields of capture and of reconstruct (capture_dir = output)
    cancel
    shutdown

Events:

    ready       version                               once, when the server starts
    health      version, python, backends, devices, packages
    started     stage, total, [capture_dir]           a job's stage began ("capture", "reconstruct");
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

PROTOCOL_VERSION = 1

REQUEST_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # type: (required fields, optional fields)
    "health": ((), ()),
    "capture": (
        ("input", "output"),
        ("frames", "focal", "backend", "device", "checkpoint", "backend_options", "overwrite"),
    ),
    "reconstruct": (("capture_dir",), ("mesh", "density", "smooth", "points")),
    "capture_reconstruct": (
        ("input", "output"),
        ("frames", "focal", "backend", "device", "checkpoint", "backend_options", "overwrite",
         "mesh", "density", "smooth", "points"),
    ),
    "cancel": ((), ()),
    "shutdown": ((), ()),
}
JOB_TYPES = ("capture", "reconstruct", "capture_reconstruct")

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
    """A line that is not a valid request."""


def parse_request(line: str) -> dict:
    """Decode and validate one request line."""
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("a request must be a JSON object")
    kind = message.get("type")
    if kind not in REQUEST_FIELDS:
        raise ProtocolError(f"unknown request type {kind!r}; known: {', '.join(REQUEST_FIELDS)}")
    required, optional = REQUEST_FIELDS[kind]
    missing = [name for name in required if message.get(name) in (None, "")]
    if missing:
        raise ProtocolError(f"{kind} request lacks {', '.join(missing)}")
    unknown = set(message) - set(required) - set(optional) - {"type", "id"}
    if unknown:
        raise ProtocolError(f"{kind} request has unknown fields: {', '.join(sorted(unknown))}")
    return message


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
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n"


def decode_event(line: str) -> dict:
    message = json.loads(line)
    if not isinstance(message, dict) or message.get("event") not in EVENT_FIELDS:
        raise ProtocolError(f"not an event: {line[:200]!r}")
    return message
