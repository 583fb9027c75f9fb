"""`python -m model_runtime serve`: the runtime as a subprocess speaking protocol.py.

The main thread reads requests from stdin; jobs run one at a time on a worker thread, so
``cancel`` and ``health`` are answered while a job runs. End of stdin cancels the running job
and ends the process once the job has stopped (its finished frames are on disk).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import BinaryIO, TextIO

from . import __version__, protocol
from .capture import CaptureOptions, run_capture
from .capture_folder import CaptureFolder
from .errors import Cancelled, UserError
from .health import health_report
from .option_schema import CAPTURE, EXPORT, RECONSTRUCT, options_for

log = logging.getLogger("model_runtime.server")
PROGRESS_INTERVAL_S = 0.2


class EventWriter:
    """Serialises events onto one stream from any thread."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, kind: str, request_id: str | None, **fields) -> None:
        line = protocol.encode(protocol.event(kind, request_id, **fields))
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


class ProgressReporter:
    """Turns per-frame callbacks into throttled progress events with frames/s and time left."""

    def __init__(self, events: EventWriter, request_id: str | None, stage: str):
        self.events, self.request_id, self.stage = events, request_id, stage
        self.started = time.perf_counter()
        self.done_before: int | None = None
        self.done = 0
        self.last_sent = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        self.done = done
        if self.done_before is None:
            # The rate is timed from the first finished frame: model loading and frames finished
            # by an earlier run of a resumed capture do not count.
            self.done_before, self.started = done, now
            if done < total:
                return
        if done < total and now - self.last_sent < PROGRESS_INTERVAL_S:
            return
        self.last_sent = now
        rate = (done - self.done_before) / max(now - self.started, 1e-6) if done > self.done_before else 0.0
        self.events.send(
            "progress", self.request_id, stage=self.stage, done=done, total=total,
            fps=round(rate, 2), eta_s=round((total - done) / rate, 1) if rate > 0 else None,
        )


class Server:
    def __init__(self, stdin: BinaryIO | TextIO, stdout: TextIO):
        self.stdin = stdin
        self.events = EventWriter(stdout)
        self.cancel_requested = threading.Event()
        self.job: threading.Thread | None = None
        # Set before a job's last event: a request the client sends on hearing it is not refused
        # as "busy" while the job's thread is still returning.
        self.job_over = threading.Event()

    def serve(self) -> int:
        self.events.send("ready", None, version=__version__, protocol=protocol.PROTOCOL_VERSION)
        for line in self.stdin:
            if not line.strip():
                continue
            try:
                message = protocol.parse_request(line)
            except protocol.ProtocolError as exc:
                self.events.send("error", protocol.request_id_of(line), code="bad_request", message=str(exc), hint=exc.hint)
                continue
            if not self.handle(message):
                break
        self.stop_job()
        return 0

    def handle(self, message: dict) -> bool:
        """Answer one request; False ends the server."""
        kind, request_id = message["type"], message.get("id")
        if kind == "shutdown":
            return False
        if kind == "cancel":
            self.cancel_requested.set()
        elif kind == "health":
            self.events.send("health", request_id, **health_report())
        elif self.job is not None and self.job.is_alive() and not self.job_over.is_set():
            self.events.send(
                "error", request_id, code="busy", message="a job is already running",
                hint="Wait for it to finish or cancel it first.",
            )
        else:
            self.cancel_requested.clear()
            self.job_over.clear()
            self.job = threading.Thread(target=self.run_job, args=(message,), name=f"job-{kind}", daemon=True)
            self.job.start()
        return True

    def stop_job(self) -> None:
        if self.job is not None and self.job.is_alive():
            self.cancel_requested.set()
            self.job.join()

    def run_job(self, message: dict) -> None:
        request_id = message.get("id")
        stages = protocol.JOB_STAGES[message["type"]]
        progress = None
        try:
            for number, stage in enumerate(stages, 1):
                progress = ProgressReporter(self.events, request_id, stage)
                summary = getattr(self, stage)(message, progress)
                self._send_last("finished", request_id, number == len(stages), stage=stage, summary=summary)
        except Cancelled:
            self._send_last("cancelled", request_id, stage=progress.stage, done=progress.done)
        except UserError as exc:
            self._send_last("error", request_id, code=exc.code, message=exc.message, hint=exc.hint)
        except Exception as exc:  # noqa: BLE001 - the client must hear about every failure
            log.error("job %s failed:\n%s", message["type"], traceback.format_exc())
            self._send_last(
                "error", request_id, code="internal", message=f"{type(exc).__name__}: {exc}",
                hint="This is a bug in the runtime; the runtime log (stderr) has the details.",
            )

    def _send_last(self, kind: str, request_id: str | None, last: bool = True, **fields) -> None:
        if last:
            self.job_over.set()
        self.events.send(kind, request_id, **fields)

    def capture(self, message: dict, progress: ProgressReporter) -> dict:
        request_id = message.get("id")
        options = CaptureOptions(**_options_of(message, CAPTURE))
        self.events.send("started", request_id, stage="capture", total=None, capture_dir=message["output"])
        summary = run_capture(
            message["input"], message["output"], options,
            progress=progress,
            warn=lambda frame, code, text: self.events.send("warning", request_id, code=code, message=text, frame=frame),
            should_cancel=self.cancel_requested.is_set,
        )
        return vars(summary)

    def reconstruct(self, message: dict, progress: ProgressReporter) -> dict:
        from .reconstruct import ReconstructOptions, reconstruct

        request_id = message.get("id")
        capture_dir = message.get("capture_dir") or message["output"]
        options = ReconstructOptions(**_options_of(message, RECONSTRUCT))
        self.events.send("started", request_id, stage="reconstruct", total=_frame_count(capture_dir), capture_dir=capture_dir)
        folder = reconstruct(
            capture_dir, options,
            progress=progress,
            should_cancel=self.cancel_requested.is_set,
        )
        return {"reconstruction_dir": str(folder)}


    def export(self, message: dict, progress: ProgressReporter) -> dict:
        from .reconstruct.export import export_files

        self.events.send("started", message.get("id"), stage="export", total=None, capture_dir=message["capture_dir"])
        return {"written": [str(path) for path in export_files(message["capture_dir"], _options_of(message, EXPORT))]}


def _frame_count(capture_dir: str) -> int | None:
    """The capture's frame count, or None when its manifest cannot tell (`reconstruct` says why)."""
    try:
        return CaptureFolder(Path(capture_dir)).frame_count
    except (UserError, KeyError, TypeError, ValueError):
        return None


def _options_of(message: dict, stage: str) -> dict:
    """The options of one stage in a validated request."""
    return {option.name: message[option.name] for option in options_for(stage) if option.name in message}


def serve() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    stdin = open(sys.stdin.fileno(), "rb", closefd=False)  # lines are decoded one by one: a bad one is refused alone
    # Protocol lines get a private copy of stdout; file descriptor 1 then points at stderr, so
    # whatever a library prints (native code included) lands in the log, not in the protocol.
    protocol_out = open(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return Server(stdin, protocol_out).serve()
