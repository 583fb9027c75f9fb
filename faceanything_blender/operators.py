"""The operators: capture, cancel, fill a frame or frame-range option from the timeline, and set up or
check the runtime. Each is a thin button over `capture_job` (the running capture) or
`runtime_tasks` (set-up and health check)."""
from __future__ import annotations

import bpy

from . import capture_job, runtime_paths, runtime_tasks
from .capture_request import CaptureError
from .props import schema


class FACEANYTHING_OT_capture(bpy.types.Operator):
    """Capture the footage and build an animated face (runs in the background; Esc cancels)"""

    bl_idname = "faceanything.capture"
    bl_label = "Capture"

    @classmethod
    def poll(cls, context):
        return not capture_job.is_capturing() and context.scene is not None

    def start(self, context) -> bool:
        try:
            capture_job.start_capture(context)
        except CaptureError as exc:
            capture_job.record_error(context.scene.faceanything, exc.message, exc.hint)
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
        if not capture_job.is_capturing():
            context.window_manager.event_timer_remove(self._timer)
            return self.report_outcome(context)
        if event.type == "ESC" and event.value == "PRESS":
            capture_job.cancel_capture()
            return {"RUNNING_MODAL"}
        return {"PASS_THROUGH"}

    def report_outcome(self, context):
        settings = context.scene.faceanything
        if settings.status == "ERROR":
            self.report({"ERROR"}, settings.last_error)
            return {"CANCELLED"}
        if settings.status == "CANCELLED":
            self.report({"WARNING"}, f"Capture cancelled. {capture_job.RESUME_HINT}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Face Anything: created {settings.last_result or 'nothing'}")
        return {"FINISHED"}


class FACEANYTHING_OT_cancel(bpy.types.Operator):
    """Stop the running capture; finished frames are kept and the next capture resumes"""

    bl_idname = "faceanything.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return capture_job.is_capturing()

    def execute(self, context):
        capture_job.cancel_capture()
        self.report({"INFO"}, "Cancelling the capture")
        return {"FINISHED"}


class FACEANYTHING_OT_frames_from_timeline(bpy.types.Operator):
    """Fill this from the timeline: a frame range takes the preview range when one is set, else the
    scene's range; a frame takes the current frame (scene frame N shows footage frame N)"""

    bl_idname = "faceanything.frames_from_timeline"
    bl_label = "From Timeline"
    bl_options = {"REGISTER", "UNDO"}

    option: bpy.props.StringProperty(options={"HIDDEN"})

    def execute(self, context):
        scene = context.scene
        label = self.option.replace("_", " ").capitalize()
        if schema.BY_NAME[self.option].is_frame_number:
            setattr(scene.faceanything, self.option, str(scene.frame_current))
            self.report({"INFO"}, f"{label}: {scene.frame_current}")
            return {"FINISHED"}
        if scene.use_preview_range:
            first, last = scene.frame_preview_start, scene.frame_preview_end
        else:
            first, last = scene.frame_start, scene.frame_end
        setattr(scene.faceanything, self.option, f"{first}:{last}")
        self.report({"INFO"}, f"{label}: {first} to {last}")
        return {"FINISHED"}


class FACEANYTHING_OT_setup_runtime(bpy.types.Operator):
    """Create the runtime's own Python environment and install its packages (downloads about 3 GB)"""

    bl_idname = "faceanything.setup_runtime"
    bl_label = "Set up Runtime"

    @classmethod
    def poll(cls, context):
        return not runtime_tasks.setup_running()

    def execute(self, context):
        if not bpy.app.online_access:
            self.report(
                {"ERROR"},
                "Set-up downloads packages, but online access is off. Allow it in Preferences > System > Network, "
                "or run `make runtime` in a checkout and pick its .venv-runtime python.",
            )
            return {"CANCELLED"}
        venv_dir = runtime_tasks.start_setup(runtime_paths.get_preferences(context), __package__)
        self.report({"INFO"}, f"Setting up the runtime in {venv_dir}")
        return {"FINISHED"}


class FACEANYTHING_OT_cancel_setup(bpy.types.Operator):
    """Stop setting up the runtime (what was downloaded is reused next time)"""

    bl_idname = "faceanything.cancel_setup"
    bl_label = "Cancel Set-up"

    @classmethod
    def poll(cls, context):
        return runtime_tasks.setup_running()

    def execute(self, context):
        runtime_tasks.cancel_setup()
        return {"FINISHED"}


class FACEANYTHING_OT_check_runtime(bpy.types.Operator):
    """Start the runtime and show its versions, backends and devices"""

    bl_idname = "faceanything.check_runtime"
    bl_label = "Check Runtime"

    @classmethod
    def poll(cls, context):
        job = runtime_tasks.health_job()
        return job is None or job.finished

    def execute(self, context):
        try:
            python = runtime_tasks.start_health_check(runtime_paths.get_preferences(context))
        except runtime_paths.UserError as exc:
            self.report({"ERROR"}, f"{exc.message} {exc.hint}".strip())
            return {"CANCELLED"}
        self.report({"INFO"}, f"Checking the runtime ({python})")
        return {"FINISHED"}


classes = (
    FACEANYTHING_OT_capture,
    FACEANYTHING_OT_cancel,
    FACEANYTHING_OT_frames_from_timeline,
    FACEANYTHING_OT_setup_runtime,
    FACEANYTHING_OT_cancel_setup,
    FACEANYTHING_OT_check_runtime,
)
