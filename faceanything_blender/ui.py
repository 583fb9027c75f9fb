"""The "Face Anything" sidebar tab of the 3D Viewport: the capture panel and its sub-panels.

The panel is laid out in the order of the work: footage, frames, backend, camera, mesh,
animation, smoothing, points, then one Capture button and the job's progress or outcome; a
closed sub-panel drives a rig from the capture (rig.py), another converts the face between point
cache and shape keys (scene_operators.py), another drives a character's shape keys and bones
with the ARKit-52 curves (expressions.py). Drawing only reads properties and the capture's job
state; it never starts or waits for anything.
"""
from __future__ import annotations

import bpy

from . import capture_job, expressions, rig, scene_operators
from .drawing import draw_error, draw_wrapped
from .props import panel_options, schema


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
        running = capture_job.is_capturing_scene(context.scene)
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        options = layout.column()
        options.enabled = not capture_job.is_capturing()
        draw_options(options, settings)
        draw_job(layout, context, settings, running)


class SubPanel:
    """A closed sub-panel of the capture panel that draws one section."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Face Anything"
    bl_parent_id = "FACEANYTHING_PT_capture"
    bl_options = {"DEFAULT_CLOSED"}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        section = cls.section  # the section's draw function: draw(layout, context)
        cls.draw = lambda panel, context: section(panel.layout, context)


class FACEANYTHING_PT_rig(SubPanel, bpy.types.Panel):
    bl_label = "Rig"
    section = staticmethod(rig.draw_rig_section)


class FACEANYTHING_PT_expressions(SubPanel, bpy.types.Panel):
    bl_label = "Expressions (ARKit)"
    section = staticmethod(expressions.draw_expressions_section)


class FACEANYTHING_PT_face_animation(SubPanel, bpy.types.Panel):
    bl_label = "Face Animation"
    section = staticmethod(scene_operators.draw_conversion_section)


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
    for stage, title, icon in ((schema.CAPTURE, "Capture", "CAMERA_DATA"), (schema.RECONSTRUCT, "Reconstruction", "MESH_DATA")):
        box = layout.box()
        box.label(text=title, icon=icon)
        for option in panel_options():
            if option.stage != stage:
                continue
            if option.is_frame_range or option.is_frame_number:
                row = box.row(align=True)
                row.prop(settings, option.name)
                row.operator("faceanything.frames_from_timeline", text="", icon="PREVIEW_RANGE").option = option.name
            else:
                box.prop(settings, option.name)
    box.prop(settings, "animation")


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
        draw_wrapped(column, "The last capture was interrupted. " + capture_job.RESUME_HINT, context, "ERROR")
    elif settings.status == "CANCELLED":
        draw_wrapped(column, f"Cancelled at {settings.frames_done}/{settings.frames_total} frames. "
                     + capture_job.RESUME_HINT, context, "INFO")
    elif settings.status == "DONE":
        draw_wrapped(column, f"Created {settings.last_result or 'nothing'}", context, "CHECKMARK")
    elif settings.status == "ERROR":
        draw_error(column, context, settings.last_error, settings.last_hint, settings.last_log.splitlines())


classes = (FACEANYTHING_PT_capture, FACEANYTHING_PT_rig, FACEANYTHING_PT_expressions, FACEANYTHING_PT_face_animation)
