"""Operators: capture (start, follow, cancel), and set up or check the runtime.

Nothing here waits for the runtime. Capture and reconstruction run in the runtime subprocess;
its events are read on a background thread (`runtime_client`), and `pump_capture`, a
`bpy.app.timers` function on the main thread, applies them to the scene's settings and, when the
job is done, builds the Blender scene. Timers do not fire in background mode, so the headless
CLI calls `pump_capture` itself: both take exactly the same path.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import prefs, runtime_paths
from .runtime_client import RuntimeClient, RuntimeJob, RuntimeStartError
from .runtime_setup import RuntimeSetup

POLL_INTERVAL_S = 0.1
HEALTH_ANSWER_WITHIN_S = 180.0  # importing torch on a cold disk can take a minute
# The request fields that change the captured maps: a capture folder is kept per footage and these.
CACHE_KEY_FIELDS = ("frames", "focal", "backend", "device", "checkpoint")
RESUME_HINT = "Press Capture to resume: finished frames are kept."


class CaptureError(runtime_paths.HintedError):
    """A capture that cannot start."""


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
_setup: RuntimeSetup | None = None
_health: RuntimeJob | None = None


# -- settings -> request ---------------------------------------------------------------------


def footage_paths(settings) -> tuple[Path, Path]:
    """(what the runtime reads, what the scene shows) for the chosen footage."""
    if settings.footage_source == "CLIP":
        clip = settings.footage_clip
        if clip is None:
            raise CaptureError("No movie clip is chosen.", "Pick a clip under Footage, or choose a video file.")
        shown = Path(bpy.path.abspath(clip.filepath, library=clip.library))
        read = shown.parent if clip.source == "SEQUENCE" else shown
    elif settings.footage_source == "FOLDER":
        read = shown = Path(bpy.path.abspath(settings.footage_folder)) if settings.footage_folder else Path()
    else:
        read = shown = Path(bpy.path.abspath(settings.footage_file)) if settings.footage_file else Path()
    if read == Path():
        raise CaptureError("No footage is chosen.", "Pick a video file, an image folder or a movie clip under Footage.")
    if not read.exists():
        raise CaptureError(f"The footage {read} does not exist.", "Pick the file again; it may have moved.")
    return read, shown


def frames_argument(settings) -> str | None:
    """The runtime's frame range ("A:B:S", 0-based, B excluded) from the panel's 1-based, inclusive one."""
    if not settings.use_frame_range:
        return None
    if settings.frame_last < settings.frame_first:
        raise CaptureError(
            f"The frame range {settings.frame_first} to {settings.frame_last} is empty.",
            "Make Last at least First.",
        )
    return f"{settings.frame_first - 1}:{settings.frame_last}:{settings.frame_step}"


def focal_argument(settings) -> str | None:
    if settings.focal_mode == "MM":
        return f"{settings.focal_mm:g}mm"
    if settings.focal_mode == "PX":
        return f"{settings.focal_px:g}px"
    return None


def capture_fields(settings, preferences, source: Path, output: Path) -> dict:
    """The fields of the ``capture_reconstruct`` request (see model_runtime/protocol.py)."""
    fields = {
        "input": str(source),
        "output": str(output),
        "frames": frames_argument(settings),
        "focal": focal_argument(settings),
        "backend": settings.backend,
        "device": preferences.device.lower(),
        "checkpoint": bpy.path.abspath(preferences.checkpoint) if preferences.checkpoint.strip() else None,
        "mesh": settings.mesh.lower(),
        "density": settings.density.lower(),
        "smooth": "on" if settings.smooth else "off",
        "points": settings.points.split() or None,
    }
    return {key: value for key, value in fields.items() if value is not None}


def footage_identity(footage: Path) -> dict:
    stat = footage.stat()
    return {"path": str(footage.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def capture_folder_for(cache_dir: Path, footage: Path, fields: dict) -> Path:
    """The cache folder of a capture: one per footage (path, size, date) and capture settings.

    The same footage and settings always give the same folder, which is how a cancelled or
    failed capture resumes; other settings get their own folder instead of being refused.
    """
    key = {"footage": footage_identity(footage), **{name: fields.get(name) for name in CACHE_KEY_FIELDS}}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", footage.stem or footage.name)[:40] or "footage"
    return cache_dir / f"{stem}-{digest}"


# -- the capture job ---------------------------------------------------------------------------


def is_capturing() -> bool:
    return _capture is not None


def is_capturing_scene(scene) -> bool:
    return _capture is not None and scene.as_pointer() == _capture.scene_pointer


def find_scene(pointer: int):
    return next((scene for scene in bpy.data.scenes if scene.as_pointer() == pointer), None)


def last_capture() -> ActiveCapture | None:
    """The capture that ended last (its job state, built objects and timings), for the CLI."""
    return _last_capture


def start_capture(context) -> ActiveCapture:
    """Start the runtime on the scene's settings; raises `CaptureError` with what to do."""
    global _capture
    if _capture is not None:
        raise CaptureError("A capture is already running.", "Wait for it, or press Cancel.")
    scene = context.scene
    settings = scene.faceanything
    preferences = prefs.get_preferences(context)
    try:
        python, _origin = prefs.runtime_python(preferences)
        source_root = runtime_paths.runtime_source_root()
    except runtime_paths.RuntimeNotFound as exc:
        raise CaptureError(exc.message, exc.hint) from exc
    source, shown = footage_paths(settings)
    key_fields = capture_fields(settings, preferences, source, Path())
    output = capture_folder_for(prefs.cache_dir(preferences), source, key_fields)
    fields = capture_fields(settings, preferences, source, output)
    client = RuntimeClient(python, source_root, log_path=output.parent / "logs" / f"{output.name}.log")
    job = RuntimeJob(client, "capture_reconstruct", fields)
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
            build_scene(active, scene)
        tag_redraw()
        return None
    if changed:
        tag_redraw()
    return POLL_INTERVAL_S


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


def build_scene(active: ActiveCapture, scene) -> None:
    """Turn the finished capture into Blender objects (main thread, from the timer)."""
    settings = scene.faceanything
    started = time.perf_counter()
    try:
        from .scene import build_from_capture

        context = bpy.context
        view_layer = context.view_layer if context.scene == scene and context.view_layer else scene.view_layers[0]
        with context.temp_override(scene=scene, view_layer=view_layer):
            active.built = build_from_capture(
                bpy.context, Path(settings.capture_dir), footage=active.footage, animation=active.animation
            ) or {}
    except Exception as exc:  # noqa: BLE001 - a failed build must reach the panel, not vanish in a timer
        if not hasattr(exc, "hint"):
            traceback.print_exc()  # not a user error: the console gets the details
        record_error(
            settings,
            f"Building the Blender scene failed: {getattr(exc, 'message', exc)}",
            f"{getattr(exc, 'hint', '')} The capture is kept in {settings.capture_dir}; "
            "press Capture to build again without capturing again.".strip(),
        )
        return
    finally:
        active.build_seconds = time.perf_counter() - started
    settings.status = "DONE"
    settings.last_result = summarize_created(created_objects(active.built))
    warnings = [str(text) for text in active.built.get("warnings") or []]
    if warnings:
        settings.warning_count += len(warnings)
        settings.last_warning = warnings[-1][:500]
    if not bpy.app.background:
        try:
            bpy.ops.ed.undo_push(message="Face Anything Capture")
        except RuntimeError:
            pass  # no undo context in this window state; the objects are there all the same


def created_objects(built) -> list[str]:
    """Names of the objects the builder made, found among the values of its result."""
    if isinstance(built, str):
        return [built] if built in bpy.data.objects else []
    if isinstance(built, dict):
        built = list(built.values())
    if isinstance(built, (list, tuple)):
        return [name for value in built for name in created_objects(value)]
    return []


def summarize_created(names: list[str], shown: int = 5) -> str:
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


def tag_redraw() -> None:
    for window in getattr(bpy.context.window_manager, "windows", ()):
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "PREFERENCES"}:
                area.tag_redraw()


# -- set-up and health check -------------------------------------------------------------------


def setup_state():
    return None if _setup is None else _setup.snapshot()


def health_job() -> RuntimeJob | None:
    return _health


def pump_runtime_tasks() -> float | None:
    """Timer that keeps the preferences up to date while set-up or a health check runs."""
    global _health
    if _health is not None and not _health.finished:
        _health.poll()
    running = (_setup is not None and _setup.snapshot().status == "RUNNING") or (
        _health is not None and not _health.finished
    )
    tag_redraw()
    return POLL_INTERVAL_S if running else None


def start_runtime_tasks_timer() -> None:
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


# -- operators ---------------------------------------------------------------------------------


class FACEANYTHING_OT_capture(bpy.types.Operator):
    """Capture the footage and build an animated face (runs in the background; Esc cancels)"""

    bl_idname = "faceanything.capture"
    bl_label = "Capture"

    @classmethod
    def poll(cls, context):
        return _capture is None and context.scene is not None

    def start(self, context) -> bool:
        try:
            start_capture(context)
        except CaptureError as exc:
            record_error(context.scene.faceanything, exc.message, exc.hint)
            self.report({"ERROR"}, f"{exc.message} {exc.hint}".strip())
            return False
        return True

    def execute(self, context):
        return {"FINISHED"} if self.start(context) else {"CANCELLED"}

    def invoke(self, context, event):
        if not self.start(context):
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(0.25, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if _capture is None:
            context.window_manager.event_timer_remove(self._timer)
            return self.report_outcome(context)
        if event.type == "ESC" and event.value == "PRESS":
            cancel_capture()
            return {"RUNNING_MODAL"}
        return {"PASS_THROUGH"}

    def report_outcome(self, context):
        settings = context.scene.faceanything
        if settings.status == "ERROR":
            self.report({"ERROR"}, settings.last_error)
            return {"CANCELLED"}
        if settings.status == "CANCELLED":
            self.report({"WARNING"}, f"Capture cancelled. {RESUME_HINT}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Face Anything: created {settings.last_result or 'nothing'}")
        return {"FINISHED"}


class FACEANYTHING_OT_cancel(bpy.types.Operator):
    """Stop the running capture; finished frames are kept and the next capture resumes"""

    bl_idname = "faceanything.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return _capture is not None

    def execute(self, context):
        cancel_capture()
        self.report({"INFO"}, "Cancelling the capture")
        return {"FINISHED"}


class FACEANYTHING_OT_setup_runtime(bpy.types.Operator):
    """Create the runtime's own Python environment and install its packages (downloads about 3 GB)"""

    bl_idname = "faceanything.setup_runtime"
    bl_label = "Set up Runtime"

    @classmethod
    def poll(cls, context):
        return _setup is None or _setup.snapshot().status != "RUNNING"

    def execute(self, context):
        global _setup
        if not bpy.app.online_access:
            self.report(
                {"ERROR"},
                "Set-up downloads packages, but online access is off. Allow it in Preferences > System > Network, "
                "or run `make runtime` in a checkout and pick its .venv-runtime python.",
            )
            return {"CANCELLED"}
        preferences = prefs.get_preferences(context)
        try:
            source_root = runtime_paths.runtime_source_root()
        except runtime_paths.RuntimeNotFound as exc:
            self.report({"ERROR"}, f"{exc.message} {exc.hint}")
            return {"CANCELLED"}
        venv_dir = runtime_paths.user_venv_dir(__package__)
        _setup = RuntimeSetup(
            venv_dir,
            source_root,
            base_python=bpy.path.abspath(preferences.setup_python) if preferences.setup_python.strip() else "",
            pip_options=prefs.pip_options(preferences),
            log_path=venv_dir.parent / "runtime-setup.log",
        )
        _setup.start()
        start_runtime_tasks_timer()
        self.report({"INFO"}, f"Setting up the runtime in {venv_dir}")
        return {"FINISHED"}


class FACEANYTHING_OT_cancel_setup(bpy.types.Operator):
    """Stop setting up the runtime (what was downloaded is reused next time)"""

    bl_idname = "faceanything.cancel_setup"
    bl_label = "Cancel Set-up"

    @classmethod
    def poll(cls, context):
        return _setup is not None and _setup.snapshot().status == "RUNNING"

    def execute(self, context):
        cancel_setup()
        return {"FINISHED"}


class FACEANYTHING_OT_check_runtime(bpy.types.Operator):
    """Start the runtime and show its versions, backends and devices"""

    bl_idname = "faceanything.check_runtime"
    bl_label = "Check Runtime"

    @classmethod
    def poll(cls, context):
        return _health is None or _health.finished

    def execute(self, context):
        global _health
        preferences = prefs.get_preferences(context)
        try:
            python, _origin = prefs.runtime_python(preferences)
            client = RuntimeClient(python, runtime_paths.runtime_source_root())
            job = RuntimeJob(client, "health", {}, answer_within_s=HEALTH_ANSWER_WITHIN_S)
            job.start()
        except (runtime_paths.RuntimeNotFound, RuntimeStartError) as exc:
            self.report({"ERROR"}, f"{exc.message} {exc.hint}".strip())
            return {"CANCELLED"}
        _health = job
        start_runtime_tasks_timer()
        self.report({"INFO"}, f"Checking the runtime ({python})")
        return {"FINISHED"}


classes = (
    FACEANYTHING_OT_capture,
    FACEANYTHING_OT_cancel,
    FACEANYTHING_OT_setup_runtime,
    FACEANYTHING_OT_cancel_setup,
    FACEANYTHING_OT_check_runtime,
)
