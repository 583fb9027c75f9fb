"""The model runtime seen from Blender: a subprocess that takes requests and sends back events.

Nothing here blocks its caller. A background thread reads the runtime's stdout into a queue and
another keeps the last lines of its stderr; the caller drains the queue whenever it likes (the
add-on does so from a timer on Blender's main thread). If the runtime dies, every request still
waiting for an answer gets an ``error`` event carrying the runtime's last stderr lines, so a
caller never waits forever. No bpy here: it is plain Python, tested without Blender's UI.

Messages follow ``model_runtime/protocol.py``, loaded from the runtime's own file.
"""
from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .runtime_paths import RUNTIME_PACKAGE, UserError, runtime_module

STDERR_LINES_KEPT = 200
LOG_TAIL_LINES = 12
SHUTDOWN_GRACE_S = 10.0
CANCEL_GRACE_S = 15.0
EXITED = "runtime_exited"

_live_clients: weakref.WeakSet[RuntimeClient] = weakref.WeakSet()


class RuntimeStartError(UserError):
    """The runtime process could not be started; the message names the interpreter."""


def runtime_environment(source_root: Path) -> dict[str, str]:
    """The runtime's environment: Blender's, minus anything that would point Python elsewhere."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__")
    }
    env.update(PYTHONPATH=str(source_root), PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PYTHONNOUSERSITE="1")
    return env


def check_interpreter(python: Path) -> None:
    """Refuse an interpreter path that cannot be run, with a message that names it."""
    hint = (
        "Set Runtime interpreter in Preferences > Add-ons > Face Anything to the python of an environment "
        "with the runtime installed, or clear it and press Set up runtime."
    )
    if not python.exists():
        raise RuntimeStartError(f"The runtime interpreter {python} does not exist.", hint)
    if python.is_dir() or not os.access(python, os.X_OK):
        raise RuntimeStartError(f"The runtime interpreter {python} is not an executable program.", hint)


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "closed its output"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def is_terminal(request_type: str, event: dict) -> bool:
    """Whether `event` is the last one a request of `request_type` will get."""
    kind = event["event"]
    if kind == "error":
        return True
    if request_type == "health":
        return kind == "health"
    stages = runtime_module("protocol").JOB_STAGES.get(request_type, ())
    # A job is over after a `finished` event for its last stage.
    return kind == "cancelled" or (kind == "finished" and bool(stages) and event.get("stage") == stages[-1])


class RuntimeClient:
    """One runtime process (``PYTHON -m model_runtime serve``) and the threads that read it."""

    def __init__(self, python: Path, source_root: Path, *, log_path: Path | None = None):
        self.python = Path(python)
        self.source_root = Path(source_root)
        self.log_path = log_path
        self.protocol = runtime_module("protocol")
        self.runtime_version: str | None = None
        self._process: subprocess.Popen | None = None
        self._events: queue.Queue[dict] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES_KEPT)
        self._stderr_lock = threading.Lock()  # the deque is written by reader threads, read by the caller
        self._pending: dict[str, str] = {}
        self._lock = threading.Lock()
        self._output_closed = False
        self._stderr_reader: threading.Thread | None = None
        self._ids = itertools.count(1)

    # -- process -------------------------------------------------------------------------------

    @property
    def argv(self) -> list[str]:
        return [str(self.python), "-m", RUNTIME_PACKAGE, "serve"]

    def start(self) -> None:
        check_interpreter(self.python)
        options: dict = {"start_new_session": True}  # a Ctrl-C meant for Blender does not kill the runtime
        if sys.platform == "win32":
            options = {"creationflags": subprocess.CREATE_NO_WINDOW}
        try:
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.source_root,
                env=runtime_environment(self.source_root),
                **options,
            )
        except OSError as exc:
            raise RuntimeStartError(
                f"The runtime interpreter {self.python} cannot be started: {exc.strerror or exc}.",
                "Choose a Python 3.11 interpreter in the Face Anything preferences, or press Set up runtime.",
            ) from exc
        _live_clients.add(self)
        self._stderr_reader = threading.Thread(target=self._read_stderr, name="faceanything-runtime-log", daemon=True)
        self._stderr_reader.start()
        threading.Thread(target=self._read_stdout, name="faceanything-runtime-events", daemon=True).start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self, wait_s: float = 0.0) -> None:
        """Ask the runtime to end (``shutdown``, then end of input); kill it if it lingers.

        With ``wait_s`` 0 the caller does not wait: a daemon thread reaps the process.
        """
        if not self.ask_to_end():
            return
        if wait_s > 0:
            self._reap(wait_s)
        else:
            threading.Thread(target=self._reap, args=(SHUTDOWN_GRACE_S,), daemon=True).start()

    def ask_to_end(self) -> bool:
        """Send ``shutdown`` and close the runtime's input; False if it is not running."""
        process = self._process
        if process is None or process.poll() is not None:
            return False
        try:
            process.stdin.write(self.protocol.request("shutdown", None).encode("utf-8"))
            process.stdin.flush()
        except (OSError, ValueError):
            pass  # already gone or already closed
        try:
            process.stdin.close()
        except (OSError, ValueError):
            pass
        return True

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()

    def _reap(self, grace_s: float) -> None:
        try:
            self._process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    # -- requests and events -------------------------------------------------------------------

    def send(self, kind: str, **fields) -> str:
        """Send one request; returns its id. Jobs and health requests are followed until they end."""
        request_id = f"{kind}-{next(self._ids)}"
        line = self.protocol.request(kind, request_id, **fields)
        follow = kind == "health" or kind in self.protocol.JOB_TYPES
        with self._lock:
            already_gone = self._output_closed
            if follow and not already_gone:
                self._pending[request_id] = kind
        if already_gone:
            if follow:
                self._events.put(self._exit_event(request_id))
            return request_id
        try:
            self._process.stdin.write(line.encode("utf-8"))
            self._process.stdin.flush()
        except (OSError, ValueError):
            pass  # the process is gone; the stdout reader reports it to every pending request
        return request_id

    def poll(self) -> list[dict]:
        """Every event received so far, without waiting."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def wait_event(self, timeout_s: float) -> dict | None:
        """The next event, waiting at most `timeout_s` (for scripts and tests, not for the UI)."""
        try:
            return self._events.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def stderr_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        with self._stderr_lock:
            return list(self._stderr)[-lines:]

    def _keep_log_line(self, text: str) -> None:
        with self._stderr_lock:
            self._stderr.append(text)

    def _read_stdout(self) -> None:
        for raw in self._process.stdout:
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                event = self.protocol.decode_event(text)
            except ValueError:  # ProtocolError is a ValueError too
                self._keep_log_line(f"[stdout] {text}")
                continue
            self._events.put(self._settle(event))
        self._process.wait()
        self._stderr_reader.join(timeout=2.0)  # its last lines explain the exit
        with self._lock:
            self._output_closed = True
            orphans, self._pending = list(self._pending), {}
        for request_id in orphans:
            self._events.put(self._exit_event(request_id))

    def _settle(self, event: dict) -> dict:
        """Note which requests an event ends; an ``error`` without id belongs to the only open request."""
        if event["event"] == "ready":
            self.runtime_version = event.get("version")
        with self._lock:
            request_id = event.get("id")
            if request_id is None and event["event"] == "error" and len(self._pending) == 1:
                request_id = next(iter(self._pending))
                event = {**event, "id": request_id}
            request_type = self._pending.get(request_id)
            if request_type is not None and is_terminal(request_type, event):
                del self._pending[request_id]
        return event

    def _read_stderr(self) -> None:
        log = None
        if self.log_path is not None:
            try:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(self.log_path, "a", encoding="utf-8")
            except OSError:
                log = None
        try:
            for raw in self._process.stderr:
                text = raw.decode("utf-8", errors="replace").rstrip()
                self._keep_log_line(text)
                if log is not None:
                    log.write(text + "\n")
                    log.flush()
        finally:
            if log is not None:
                log.close()

    def _exit_event(self, request_id: str) -> dict:
        tail = self.stderr_tail()
        if any("No module named" in line for line in tail):
            hint = (
                f"{self.python} lacks the runtime's packages: set Runtime interpreter in the add-on preferences to "
                "the runtime environment's python, or clear it and press Set up runtime."
            )
        else:
            hint = "Its last messages are shown below. Check the runtime in the add-on preferences (Check runtime)."
        return self.protocol.event(
            "error",
            request_id,
            code=EXITED,
            message=f"The runtime ({self.python}) {describe_exit(self.returncode)} before it finished.",
            hint=hint,
            log_tail=tail,
        )


def stop_all_clients(wait_s: float = 2.0) -> None:
    """End every runtime process this Blender started (add-on disabled, Blender quitting).

    Starts no thread, so it also works while Python shuts down."""
    clients = [client for client in list(_live_clients) if client.ask_to_end()]
    deadline = time.monotonic() + wait_s
    for client in clients:
        try:
            client._process.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            client._process.kill()


@dataclass
class JobState:
    """What a job has done so far, as the panel shows it."""

    status: str = "RUNNING"  # RUNNING, DONE, CANCELLED or ERROR
    stage: str = ""
    done: int = 0
    total: int = 0
    fps: float = 0.0
    eta_s: float | None = None
    warnings: int = 0
    last_warning: str = ""
    message: str = ""
    hint: str = ""
    log_tail: list[str] = field(default_factory=list)
    capture_dir: str = ""
    summaries: dict[str, dict] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    result: dict = field(default_factory=dict)


class RuntimeJob:
    """One request (a capture job or a health check) on a runtime process of its own.

    `poll()` applies the events received so far to `state`; once the request has ended the
    process is asked to shut down. A process per job keeps memory (GPU memory included) free for
    Blender between captures.
    """

    def __init__(self, client: RuntimeClient, kind: str, fields: dict, *, answer_within_s: float | None = None):
        self.client = client
        self.kind = kind
        self.fields = fields
        self.state = JobState()
        self.request_id: str | None = None
        self.answer_within_s = answer_within_s
        self._started_at = 0.0
        self._stage_started: dict[str, float] = {}
        self._cancel_requested_at: float | None = None
        self._stopped = False

    @property
    def finished(self) -> bool:
        return self.state.status != "RUNNING"

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested_at is not None

    def start(self) -> None:
        """Start the runtime and send the request (raises `RuntimeStartError`)."""
        self.client.start()
        self._started_at = time.monotonic()
        self.request_id = self.client.send(self.kind, **self.fields)

    def cancel(self) -> None:
        """Ask the runtime to stop; it keeps what it has finished. Killed if it does not stop."""
        if self.finished or self.cancel_requested:
            return
        self._cancel_requested_at = time.monotonic()
        self.client.send("cancel")

    def poll(self) -> bool:
        """Apply the events received so far; True when something changed."""
        events = [e for e in self.client.poll() if e.get("id") == self.request_id]
        for event in events:
            if not self.finished:
                self._apply(event)
        self._enforce_deadlines()
        if self.finished and not self._stopped:
            self._stopped = True
            self.client.stop()
        return bool(events)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        if self.finished:
            return
        if self.cancel_requested and now - self._cancel_requested_at > CANCEL_GRACE_S:
            self.client.kill()  # the exit event that follows ends the job as cancelled
        if self.answer_within_s is not None and now - self._started_at > self.answer_within_s:
            self.state.status = "ERROR"
            self.state.message = f"The runtime did not answer within {self.answer_within_s:.0f} s."
            self.state.hint = "Its last messages are shown below; check that the interpreter has the runtime installed."
            self.state.log_tail = self.client.stderr_tail()
            self.client.kill()

    def _apply(self, event: dict) -> None:
        state, kind, now = self.state, event["event"], time.monotonic()
        if kind == "started":
            state.stage = event.get("stage") or ""
            state.done, state.total, state.fps, state.eta_s = 0, int(event.get("total") or 0), 0.0, None
            state.capture_dir = event.get("capture_dir") or state.capture_dir
            self._stage_started[state.stage] = now
        elif kind == "progress":
            state.stage = event.get("stage") or state.stage
            state.done, state.total = int(event.get("done") or 0), int(event.get("total") or 0)
            state.fps, state.eta_s = float(event.get("fps") or 0.0), event.get("eta_s")
        elif kind == "warning":
            state.warnings += 1
            state.last_warning = str(event.get("message", ""))
        elif kind == "finished":
            stage = event.get("stage") or ""
            state.summaries[stage] = event.get("summary") or {}
            state.stage_seconds[stage] = now - self._stage_started.get(stage, self._started_at)
            if is_terminal(self.kind, event):
                state.status = "DONE"
        elif kind == "health":
            state.result = {key: value for key, value in event.items() if key not in ("event", "id")}
            state.status = "DONE"
        elif kind == "cancelled":
            state.status = "CANCELLED"
        elif kind == "error":
            self._apply_error(event)

    def _apply_error(self, event: dict) -> None:
        state = self.state
        if self.cancel_requested and event.get("code") == EXITED:
            state.status = "CANCELLED"
            return
        state.status = "ERROR"
        state.message = str(event.get("message") or "The runtime reported an error.")
        state.hint = str(event.get("hint") or "")
        state.log_tail = list(event.get("log_tail") or [])
        if not state.log_tail and event.get("code") == "internal":
            state.log_tail = self.client.stderr_tail()
