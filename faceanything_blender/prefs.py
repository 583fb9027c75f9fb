"""Add-on preferences: which runtime to run, on which device, with which weights, caching where."""
from __future__ import annotations

import bpy
from bpy.props import StringProperty

from . import runtime_paths, runtime_tasks
from .drawing import draw_error, draw_wrapped
from .props import option_property, schema


class FACEANYTHING_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    runtime_python: StringProperty(
        name="Runtime Interpreter",
        subtype="FILE_PATH",
        description="Python of the runtime's environment; empty finds it (checkout or Set up runtime)",
    )
    device: option_property(schema.BY_NAME["device"])
    checkpoint: StringProperty(
        name="Face Anything Checkpoint", subtype="FILE_PATH", description=schema.BY_NAME["checkpoint"].help_text()
    )
    cache_dir: StringProperty(
        name="Cache Folder",
        subtype="DIR_PATH",
        description="Where captures are kept, one folder per footage; empty uses the extension's user folder",
    )
    setup_python: StringProperty(
        name="Python for Set-up",
        subtype="FILE_PATH",
        description="A system Python 3.11 to build the runtime environment from; empty searches PATH",
    )
    pip_options: StringProperty(
        name="Extra pip Options",
        description="For example --extra-index-url https://download.pytorch.org/whl/cu128 for CUDA builds of torch",
    )

    def draw(self, context):
        draw_preferences(self, context)


def draw_preferences(preferences, context) -> None:
    layout = preferences.layout
    layout.use_property_split = True
    layout.use_property_decorate = False
    column = layout.column()
    column.prop(preferences, "runtime_python")
    try:
        python, origin = runtime_paths.preferred_runtime_python(preferences)
        column.label(text=f"Using {python} ({origin})", icon="CHECKMARK")
    except runtime_paths.RuntimeNotFound as exc:
        column.label(text=exc.message, icon="ERROR")
    column.prop(preferences, "device")
    column.prop(preferences, "checkpoint")
    column.prop(preferences, "cache_dir")
    if not preferences.cache_dir.strip():
        column.label(text=f"Using {runtime_paths.preferred_cache_dir(preferences)}", icon="FILE_FOLDER")

    box = layout.box()
    box.label(text="Runtime", icon="CONSOLE")
    box.prop(preferences, "setup_python")
    box.prop(preferences, "pip_options")
    row = box.row()
    row.operator("faceanything.setup_runtime", icon="IMPORT")
    row.operator("faceanything.check_runtime", icon="CHECKMARK")
    draw_setup(box, context, runtime_tasks.setup_state())
    draw_health(box, context, runtime_tasks.health_job())


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


classes = (FACEANYTHING_AddonPreferences,)
