"""The "Face Anything" sidebar tab of the 3D Viewport, and the preferences' layout.

The panel is laid out in the order of the work: footage, frames, backend, camera, mesh,
animation, smoothing, points, then one Capture button and the job's progress or outcome; a
closed sub-panel drives a rig from the capture (rig.py), another converts the face between point
cache and shape keys (scene_operators.py). Drawing only reads properties and the
operators' job state; it never starts or waits for anything.
"""
from __future__ import annotations

import textwrap

import bpy

from . import operators, prefs, rig, runtime_paths, scene_operators

CHARS_PER_PIXEL = 1 / 7  # rough width of a character of the default UI font, for wrapping


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_text(settings) -> str:
    stage = (settings.stage or "starting").capitalize()
    if settings.frames_total <= 0:
        return f"{stage}..."
    parts = [f"{stage}: {settings.frames_done}/{settings.frames_total} frames"]
    if settings.frames_per_second > 0:
        parts.append(f"{settings.frames_per_second:.1f} frames/s")
    if settings.seconds_left >= 0:
        parts.append(f"{format_duration(settings.seconds_left)} left")
    return ", ".join(parts)


def progress_factor(settings) -> float:
    if settings.frames_total <= 0:
        return 0.0
    return min(max(settings.frames_done / settings.frames_total, 0.0), 1.0)


def draw_wrapped(layout, text: str, context, icon: str = "NONE") -> None:
    """Labels for a long text, wrapped to the region's width (the sidebar is narrow)."""
    region = getattr(context, "region", None)
    width = max(int((region.width if region else 320) * CHARS_PER_PIXEL), 20)
    column = layout.column(align=True)
    for number, line in enumerate(textwrap.wrap(text, width) or [""]):
        column.label(text=line, icon=icon if number == 0 else "BLANK1" if icon != "NONE" else "NONE")


class FACEANYTHING_PT_capture(bpy.types.Panel):
    bl_label = "Face Anything"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Face Anything"

    @classmethod
    def poll(cls, context):
        return context.scene is not None

    def draw(self, context):
        settings = context.scene.faceanything
        running = operators.is_capturing_scene(context.scene)
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        options = layout.column()
        options.enabled = not operators.is_capturing()
        draw_options(options, settings)
        draw_job(layout, context, settings, running)


class FACEANYTHING_PT_rig(bpy.types.Panel):
    bl_label = "Rig"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Face Anything"
    bl_parent_id = "FACEANYTHING_PT_capture"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        rig.draw_rig_section(self.layout, context)


class FACEANYTHING_PT_face_animation(bpy.types.Panel):
    bl_label = "Face Animation"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Face Anything"
    bl_parent_id = "FACEANYTHING_PT_capture"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        scene_operators.draw_conversion_section(self.layout, context)


def draw_options(layout, settings) -> None:
    box = layout.box()
    box.label(text="Footage", icon="FILE_MOVIE")
    box.prop(settings, "footage_source", text="Source")
    if settings.footage_source == "FILE":
        box.prop(settings, "footage_file")
    elif settings.footage_source == "FOLDER":
        box.prop(settings, "footage_folder")
    else:
        box.prop(settings, "footage_clip")
    frames = box.column(align=True)
    frames.prop(settings, "use_frame_range")
    numbers = frames.column(align=True)
    numbers.enabled = settings.use_frame_range
    numbers.prop(settings, "frame_first")
    numbers.prop(settings, "frame_last")
    numbers.prop(settings, "frame_step")

    box = layout.box()
    box.label(text="Capture", icon="CAMERA_DATA")
    box.prop(settings, "backend")
    box.prop(settings, "focal_mode", text="Focal Length")
    if settings.focal_mode == "MM":
        box.prop(settings, "focal_mm", text="Millimetres")
    elif settings.focal_mode == "PX":
        box.prop(settings, "focal_px", text="Pixels")

    box = layout.box()
    box.label(text="Reconstruction", icon="MESH_DATA")
    box.prop(settings, "mesh")
    density = box.row()
    density.enabled = settings.mesh == "DENSE"
    density.prop(settings, "density")
    box.prop(settings, "animation")
    box.prop(settings, "smooth")
    box.prop(settings, "points")


def draw_job(layout, context, settings, running: bool) -> None:
    column = layout.column()
    if running:
        column.progress(factor=progress_factor(settings), type="BAR", text=progress_text(settings))
        column.operator("faceanything.cancel", icon="CANCEL")
    else:
        resumable = settings.status in {"CANCELLED", "ERROR", "RUNNING"} and settings.capture_dir
        column.operator("faceanything.capture", text="Resume Capture" if resumable else "Capture", icon="REC")
    if settings.warning_count:
        draw_wrapped(column, f"{settings.warning_count} warning(s), last: {settings.last_warning}", context, "INFO")
    if running:
        return
    if settings.status == "RUNNING":
        draw_wrapped(column, "The last capture was interrupted. " + operators.RESUME_HINT, context, "ERROR")
    elif settings.status == "CANCELLED":
        draw_wrapped(column, f"Cancelled at {settings.frames_done}/{settings.frames_total} frames. "
                     + operators.RESUME_HINT, context, "INFO")
    elif settings.status == "DONE":
        draw_wrapped(column, f"Created {settings.last_result or 'nothing'}", context, "CHECKMARK")
    elif settings.status == "ERROR":
        draw_error(column, context, settings.last_error, settings.last_hint, settings.last_log.splitlines())


def draw_error(layout, context, message: str, hint: str, log_lines: list[str]) -> None:
    box = layout.box()
    box.alert = True
    draw_wrapped(box, message, context, "ERROR")
    if hint:
        draw_wrapped(box, hint, context)
    if log_lines:
        log = box.column(align=True)
        log.scale_y = 0.8
        log.label(text="The runtime's last messages:")
        for line in log_lines[-8:]:
            log.label(text=line[-200:])


def draw_preferences(preferences, context) -> None:
    layout = preferences.layout
    layout.use_property_split = True
    layout.use_property_decorate = False
    column = layout.column()
    column.prop(preferences, "runtime_python")
    try:
        python, origin = prefs.runtime_python(preferences)
        column.label(text=f"Using {python} ({origin})", icon="CHECKMARK")
    except runtime_paths.RuntimeNotFound as exc:
        column.label(text=exc.message, icon="ERROR")
    column.prop(preferences, "device")
    column.prop(preferences, "checkpoint")
    column.prop(preferences, "cache_dir")
    if not preferences.cache_dir.strip():
        column.label(text=f"Using {prefs.cache_dir(preferences)}", icon="FILE_FOLDER")

    box = layout.box()
    box.label(text="Runtime", icon="CONSOLE")
    box.prop(preferences, "setup_python")
    box.prop(preferences, "pip_options")
    row = box.row()
    row.operator("faceanything.setup_runtime", icon="IMPORT")
    row.operator("faceanything.check_runtime", icon="CHECKMARK")
    draw_setup(box, context, operators.setup_state())
    draw_health(box, context, operators.health_job())


def draw_setup(layout, context, state) -> None:
    if state is None:
        return
    if state.status == "RUNNING":
        layout.progress(factor=state.factor, type="BAR", text=f"Step {state.step} of {state.steps}: {state.title}")
        if state.last_line:
            layout.label(text=state.last_line[-120:])
        layout.operator("faceanything.cancel_setup", icon="CANCEL")
    elif state.status == "DONE":
        layout.label(text=f"The runtime is set up (from {state.python}).", icon="CHECKMARK")
    elif state.status in {"ERROR", "CANCELLED"}:
        draw_error(layout, context, state.message, state.hint, [])


def draw_health(layout, context, job) -> None:
    if job is None:
        return
    state = job.state
    if state.status == "RUNNING":
        layout.label(text="Starting the runtime...", icon="TIME")
    elif state.status == "ERROR":
        draw_error(layout, context, state.message, state.hint, state.log_tail)
    elif state.status == "DONE":
        report = state.result
        column = layout.column(align=True)
        column.label(text=f"Runtime {report.get('version')} on Python {report.get('python')}", icon="CHECKMARK")
        column.label(text="Backends: " + (", ".join(map(str, report.get("backends") or ())) or "none"))
        for device in report.get("devices") or []:
            if isinstance(device, dict):
                column.label(text=f"Device {device.get('name')}: {device.get('description', '')}")
            else:
                column.label(text=f"Device {device}")
        packages = report.get("packages") or {}
        if isinstance(packages, dict):
            listed = ", ".join(f"{name} {version or 'missing'}" for name, version in packages.items())
            draw_wrapped(column, f"Packages: {listed}", context)


classes = (FACEANYTHING_PT_capture, FACEANYTHING_PT_rig, FACEANYTHING_PT_face_animation)
