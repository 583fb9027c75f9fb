""""Set up runtime": a virtual environment for the model runtime, made outside Blender's Python.

Why not Blender's own Python: the runtime needs torch, MediaPipe and OpenCV, which are large,
native and pinned to versions Blender does not ship; installing them into Blender's interpreter
is the most reported problem of other face-capture add-ons (it breaks on every Blender update
and can break Blender itself). So the runtime gets its own environment, made from a Python 3.11
on the system (found on PATH, or the one picked in the preferences; the runtime's wheels and
tests target 3.11), and Blender talks to it through a subprocess.

The steps run one after another on a background thread, each in a subprocess started without a
shell; the caller reads `snapshot()` from the main thread. A failure names the step and says what
to do; everything the steps print goes to a log file as well.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from .runtime_client import runtime_environment
from .runtime_paths import RUNTIME_PACKAGE, venv_python

REQUIRED_PYTHON = (3, 11)
PYTHON_NAMES = ("python3.11", "python3", "python")
PROBE = "import json, sys; print(json.dumps({'version': list(sys.version_info[:2]), 'prefix': sys.prefix}))"


class SetupFailed(Exception):
    def __init__(self, detail: str, hint: str):
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


@dataclass
class SetupState:
    status: str = "IDLE"  # IDLE, RUNNING, DONE, CANCELLED or ERROR
    step: int = 0
    steps: int = 0
    title: str = ""
    last_line: str = ""
    message: str = ""
    hint: str = ""
    python: str = ""
    health: dict = field(default_factory=dict)

    @property
    def factor(self) -> float:
        return (self.step - 1) / self.steps if self.steps else 0.0


def probe_python(python: Path) -> dict | None:
    """Version and prefix of an interpreter, or None if it does not run."""
    try:
        done = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=60)
        return json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def is_blenders_python(info: dict) -> bool:
    return Path(info["prefix"]).resolve() == Path(sys.prefix).resolve()


def find_base_python(preference: str = "") -> Path:
    """A Python 3.11 that is not Blender's: the one picked by the user, else the first on PATH."""
    wanted = ".".join(map(str, REQUIRED_PYTHON))
    if preference.strip():
        candidates = [Path(os.path.expanduser(preference.strip()))]
    else:
        candidates = [Path(found) for name in PYTHON_NAMES if (found := shutil.which(name))]
    seen = []
    for python in candidates:
        info = probe_python(python)
        if info is None:
            seen.append(f"{python} (does not run)")
        elif tuple(info["version"]) != REQUIRED_PYTHON:
            seen.append(f"{python} (Python {'.'.join(map(str, info['version']))})")
        elif is_blenders_python(info):
            seen.append(f"{python} (Blender's own Python)")
        else:
            return python
    found = "; found: " + ", ".join(seen) if seen else " and none was found on PATH"
    raise SetupFailed(
        f"the runtime needs a Python {wanted} that is not Blender's own{found}",
        f"Install Python {wanted} (python.org, or your system's package manager) and press Set up runtime again, "
        f"or pick its interpreter under 'Python for set-up'.",
    )


class RuntimeSetup:
    """The set-up steps, run on a background thread; `snapshot()` is safe to call from the UI."""

    def __init__(
        self,
        venv_dir: Path,
        source_root: Path,
        *,
        base_python: str = "",
        pip_options: list[str] | None = None,
        log_path: Path | None = None,
    ):
        self.venv_dir = Path(venv_dir)
        self.source_root = Path(source_root)
        self.base_python_preference = base_python
        self.pip_options = list(pip_options or [])
        self.log_path = log_path
        self._state = SetupState()
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    @property
    def steps(self) -> list[tuple[str, Callable[[], None], str]]:
        """(title, action, what to do when it fails)."""
        requirements = self.source_root / RUNTIME_PACKAGE
        return [
            ("find Python 3.11", self._find_python, ""),
            ("create the environment", self._create_venv,
             "Make sure the venv module is installed (Debian/Ubuntu: apt install python3.11-venv) "
             f"and that {self.venv_dir.parent} is writable."),
            ("install the runtime's packages", lambda: self._pip("-r", str(requirements / "requirements.txt")),
             "Check the internet connection and free disk space (about 5 GB), then press Set up runtime again; "
             "packages already downloaded are reused."),
            ("install the model packages",
             lambda: self._pip("--no-deps", "-r", str(requirements / "requirements-nodeps.txt")),
             "Check the internet connection, then press Set up runtime again."),
            ("check the runtime", self._check_health,
             "The packages installed but the runtime does not start; the log shows why."),
        ]

    def start(self) -> None:
        self._update(status="RUNNING", step=0, steps=len(self.steps), message="", hint="", last_line="")
        self._thread = threading.Thread(target=self._run, name="faceanything-runtime-setup", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancelled.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for the steps to end (scripts and tests only)."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def snapshot(self) -> SetupState:
        with self._lock:
            return replace(self._state, health=dict(self._state.health))

    def _update(self, **changes) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._state, key, value)

    def _run(self) -> None:
        steps = self.steps
        for number, (title, action, hint) in enumerate(steps, start=1):
            if self._cancelled.is_set():
                self._mark_cancelled()
                return
            self._update(step=number, title=title, last_line="")
            self._log(f"== step {number} of {len(steps)}: {title}")
            try:
                action()
            except SetupFailed as exc:
                if self._cancelled.is_set():
                    self._mark_cancelled()
                    return
                self._log(f"!! {exc.detail}")
                where = f" The full log is in {self.log_path}." if self.log_path else ""
                self._update(
                    status="ERROR",
                    message=f"Step {number} of {len(steps)} ({title}) failed: {exc.detail}",
                    hint=(exc.hint or hint) + where,
                )
                return
        self._update(status="DONE", step=len(steps), title="ready", message="", last_line="")

    def _mark_cancelled(self) -> None:
        self._update(status="CANCELLED", message="Set-up was cancelled.", hint="Press Set up runtime to go on.")

    # -- steps ---------------------------------------------------------------------------------

    def _find_python(self) -> None:
        python = find_base_python(self.base_python_preference)
        self._update(python=str(python), last_line=str(python))

    def _create_venv(self) -> None:
        python = venv_python(self.venv_dir)
        info = probe_python(python) if python.exists() else None
        if info is not None and tuple(info["version"]) == REQUIRED_PYTHON:
            self._update(last_line=f"reusing {self.venv_dir}")
            return
        self._call([self._state.python, "-m", "venv", "--clear", str(self.venv_dir)])

    def _pip(self, *arguments: str) -> None:
        python = venv_python(self.venv_dir)
        self._call([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
                    *self.pip_options, *arguments])

    def _check_health(self) -> None:
        output = self._call([str(venv_python(self.venv_dir)), "-m", RUNTIME_PACKAGE, "health"])
        try:
            report = json.loads(output[output.index("{"):])
        except ValueError as exc:
            raise SetupFailed(f"the health report cannot be read ({exc})", "") from exc
        self._update(health=report)

    def _call(self, argv: list[str]) -> str:
        """Run one command, streaming its output into the log and the progress line; its output."""
        self._log("$ " + " ".join(argv))
        env = runtime_environment(self.source_root)
        env["PIP_NO_INPUT"] = "1"
        try:
            self._process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.source_root, env=env,
                text=True, encoding="utf-8", errors="replace",
            )
        except OSError as exc:
            raise SetupFailed(f"{argv[0]} cannot be run ({exc.strerror or exc})", "") from exc
        lines = []
        for line in self._process.stdout:
            line = line.rstrip()
            lines.append(line)
            self._log(line)
            if line.strip():
                self._update(last_line=line.strip()[:200])
        returncode = self._process.wait()
        if returncode != 0:
            last = next((text for text in reversed(lines) if text.strip()), "no output")
            raise SetupFailed(f"{Path(argv[0]).name} {' '.join(argv[1:3])} exited with code {returncode}: {last}", "")
        return "\n".join(lines)

    def _log(self, text: str) -> None:
        if self.log_path is None:
            return
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(text + "\n")
        except OSError:
            pass
