"""Setting up the runtime and checking it: background tasks the preferences show while they run."""
from __future__ import annotations

import shlex

import bpy

from . import runtime_paths
from .capture_job import POLL_INTERVAL_S, tag_redraw
from .runtime_client import RuntimeClient, RuntimeJob
from .runtime_setup import RuntimeSetup

HEALTH_ANSWER_WITHIN_S = 180.0  # importing torch on a cold disk can take a minute

_setup: RuntimeSetup | None = None
_health: RuntimeJob | None = None


def setup_state():
    return None if _setup is None else _setup.snapshot()


def setup_running() -> bool:
    return _setup is not None and _setup.snapshot().status == "RUNNING"


def health_job() -> RuntimeJob | None:
    return _health


def start_setup(preferences, package: str) -> str:
    """Build the runtime's environment in the extension's user folder; returns that folder
    (raises `RuntimeNotFound` when the runtime's source is missing)."""
    global _setup
    source_root = runtime_paths.runtime_source_root()
    venv_dir = runtime_paths.user_venv_dir(package)
    _setup = RuntimeSetup(
        venv_dir,
        source_root,
        base_python=bpy.path.abspath(preferences.setup_python) if preferences.setup_python.strip() else "",
        pip_options=shlex.split(preferences.pip_options),
        log_path=venv_dir.parent / "runtime-setup.log",
    )
    _setup.start()
    start_timer()
    return str(venv_dir)


def start_health_check(preferences) -> str:
    """Start the runtime and ask for its versions, backends and devices; returns the interpreter."""
    global _health
    python, _origin = runtime_paths.preferred_runtime_python(preferences)
    client = RuntimeClient(python, runtime_paths.runtime_source_root())
    job = RuntimeJob(client, "health", {}, answer_within_s=HEALTH_ANSWER_WITHIN_S)
    job.start()
    _health = job
    start_timer()
    return str(python)


def pump_runtime_tasks() -> float | None:
    """Timer that keeps the preferences up to date while set-up or a health check runs."""
    if _health is not None and not _health.finished:
        _health.poll()
    running = setup_running() or (_health is not None and not _health.finished)
    tag_redraw()
    return POLL_INTERVAL_S if running else None


def start_timer() -> None:
    if not bpy.app.timers.is_registered(pump_runtime_tasks):
        bpy.app.timers.register(pump_runtime_tasks, first_interval=POLL_INTERVAL_S, persistent=True)


def cancel_setup() -> None:
    """Stop a running set-up (its pip subprocess included); plain Python, safe at exit."""
    if _setup is not None:
        _setup.cancel()


def stop_runtime_tasks() -> None:
    global _health
    cancel_setup()
    if _health is not None:
        _health.client.stop()
        _health = None
    if bpy.app.timers.is_registered(pump_runtime_tasks):
        bpy.app.timers.unregister(pump_runtime_tasks)
