"""The running capture: start it, follow its events, cancel it, and build the scene when it ends.

Nothing here waits for the runtime. Capture and reconstruction run in the runtime subprocess;
its events are read on a background thread (`runtime_client`), and `pump_capture`, a
`bpy.app.timers` function on the main thread, applies them to the scene's settings and, when the
job is done, builds the Blender scene (`scene_writer`). Timers do not fire in background mode, so
the headless CLI calls `pump_capture` itself: both take exactly the same path.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import capture_request, runtime_paths, scene_writer
from .capture_request import CaptureError
from .runtime_client import RuntimeClient, RuntimeJob, RuntimeStartError

POLL_INTERVAL_S = 0.1
RESUME_HINT = "Press Capture to resume: finished frames are kept."


@dataclass
class ActiveCapture:
    job: RuntimeJob
    scene_pointer: int  # the scene's address: it survives renames, and a deleted scene is not found
    footage: str
    animation: str
    built: dict = field(default_factory=dict)
    build_seconds: float = 0.0


_capture: ActiveCapture | None = None
_last_capture: ActiveCapture | None = None


def is_capturing() -> bool:
    return _capture is not None


def is_capturing_scene(scene) -> bool:
    return _capture is not None and scene.as_pointer() == _capture.scene_pointer


def active_capture() -> ActiveCapture | None:
    return _capture


def find_scene(pointer: int):
    return next((scene for scene in bpy.data.scenes if scene.as_pointer() == pointer), None)


def last_capture() -> ActiveCapture | None:
    """The capture that ended last (its job state, built objects and timings), for the CLI."""
    return _last_capture


def start_capture(context, extra_options: dict | None = None) -> ActiveCapture:
    """Start the runtime on the scene's settings (and `extra_options`, from the headless CLI);
    raises `CaptureError` with what to do."""
    global _capture
    if _capture is not None:
        raise CaptureError("A capture is already running.", "Wait for it, or press Cancel.")
    scene = context.scene
    settings = scene.faceanything
    preferences = runtime_paths.get_preferences(context)
    try:
        python, _origin = runtime_paths.preferred_runtime_python(preferences)
    except runtime_paths.RuntimeNotFound as exc:
        raise CaptureError(exc.message, exc.hint) from exc
    source, shown = capture_request.footage_paths(settings)
    options = capture_request.option_values(settings, preferences, extra_options)
    output = capture_request.capture_folder_for(runtime_paths.preferred_cache_dir(preferences), source, options)
    client = RuntimeClient(python, runtime_paths.runtime_source_root(), log_path=output.parent / "logs" / f"{output.name}.log")
    job = RuntimeJob(client, "capture_reconstruct", capture_request.capture_fields(source, output, options))
    try:
        job.start()
    except RuntimeStartError as exc:
        raise CaptureError(exc.message, exc.hint) from exc
    _capture = ActiveCapture(job, scene.as_pointer(), str(shown), settings.animation)
    reset_status(settings, output)
    if not bpy.app.timers.is_registered(pump_capture):
        bpy.app.timers.register(pump_capture, first_interval=POLL_INTERVAL_S, persistent=True)
    return _capture


def reset_status(settings, capture_dir: Path) -> None:
    settings.status = "RUNNING"
    settings.stage = "starting"
    settings.frames_done = settings.frames_total = settings.warning_count = 0
    settings.frames_per_second = 0.0
    settings.seconds_left = -1.0
    for name in ("last_warning", "last_error", "last_hint", "last_log", "last_result"):
        setattr(settings, name, "")
    settings.capture_dir = str(capture_dir)


def record_error(settings, message: str, hint: str = "", log_tail: list[str] | None = None) -> None:
    settings.status = "ERROR"
    settings.last_error = message
    settings.last_hint = hint
    settings.last_log = "\n".join(log_tail or [])


def cancel_capture() -> bool:
    """Ask the runtime to stop (it keeps finished frames); False when nothing is running."""
    if _capture is None:
        return False
    _capture.job.cancel()
    return True


def abort_capture() -> None:
    """Stop the capture without waiting for it (another file loads, the add-on is disabled)."""
    _drop_capture()
    if bpy.app.timers.is_registered(pump_capture):
        bpy.app.timers.unregister(pump_capture)


def _drop_capture() -> None:
    global _capture
    if _capture is not None:
        _capture.job.cancel()
        _capture.job.client.stop()
        _capture = None


def pump_capture() -> float | None:
    """Apply the runtime's events to the scene; the timer function (returns None to stop)."""
    global _capture, _last_capture
    active = _capture
    if active is None:
        return None
    job = active.job
    changed = job.poll()
    scene = find_scene(active.scene_pointer)
    if scene is None:  # the scene was deleted
        _drop_capture()
        return None
    if changed or job.finished:
        write_status(scene.faceanything, job)
    if job.finished:
        _capture, _last_capture = None, active
        if job.state.status == "DONE":
            finish_capture(active, scene)
        tag_redraw()
        return None
    if changed:
        tag_redraw()
    return POLL_INTERVAL_S


def finish_capture(active: ActiveCapture, scene) -> None:
    """Build the scene from the finished capture and record the outcome in the scene's settings."""
    settings = scene.faceanything
    started = time.perf_counter()
    try:
        active.built = scene_writer.build_scene(scene, Path(settings.capture_dir), active.footage, active.animation)
    except runtime_paths.UserError as exc:
        record_error(settings, exc.message, exc.hint)
        return
    finally:
        active.build_seconds = time.perf_counter() - started
    settings.status = "DONE"
    settings.last_result = scene_writer.summarize_created(scene_writer.created_objects(active.built))
    warnings = [str(text) for text in active.built.get("warnings") or []]
    if warnings:
        settings.warning_count += len(warnings)
        settings.last_warning = warnings[-1][:500]
    if not bpy.app.background:
        try:
            bpy.ops.ed.undo_push(message="Face Anything Capture")
        except RuntimeError:
            pass  # no undo context in this window state; the objects are there all the same


def write_status(settings, job: RuntimeJob) -> None:
    state = job.state
    settings.stage = state.stage
    settings.frames_done, settings.frames_total = state.done, state.total
    settings.frames_per_second = state.fps
    settings.seconds_left = -1.0 if state.eta_s is None else float(state.eta_s)
    settings.warning_count, settings.last_warning = state.warnings, state.last_warning[:500]
    if state.capture_dir:
        settings.capture_dir = state.capture_dir
    if state.status == "ERROR":
        hint = f"{state.hint} {RESUME_HINT}".strip()
        record_error(settings, state.message, hint, state.log_tail)
    elif state.status == "CANCELLED":
        settings.status = "CANCELLED"
        settings.last_hint = RESUME_HINT
    elif state.status == "RUNNING":
        settings.status = "RUNNING"


def tag_redraw() -> None:
    for window in getattr(bpy.context.window_manager, "windows", ()):
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "PREFERENCES"}:
                area.tag_redraw()
