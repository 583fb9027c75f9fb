"""Face Anything for Blender: footage of a face in, an animated 3D face in Blender out.

The heavy work runs in the model runtime, a separate Python process (see runtime_client.py);
this add-on holds the settings, the panel, and the operators that drive the runtime and build
the scene from its output. Everything `register()` adds, `unregister()` removes: classes, the
scene property, the file-load handler, timers, the exit hook and any runtime process.
"""
from __future__ import annotations

import atexit

import bpy
from bpy.app.handlers import persistent

from . import (
    capture_job, expressions, operators, prefs, props, rig, rig_props, runtime_client, runtime_tasks, scene_operators, ui,
)

classes = (
    *rig_props.classes,
    *props.classes,
    *prefs.classes,
    *operators.classes,
    *rig.classes,
    *scene_operators.classes,
    *expressions.classes,
    *ui.classes,
)


@persistent
def cancel_capture_on_load(_filepath) -> None:
    """A capture writes into a scene of the current file; loading another file ends it."""
    capture_job.abort_capture()


def end_processes_at_exit() -> None:
    """Blender is quitting: end the runtime and set-up subprocesses. Blender's data may already be
    freed at this point, so this touches no bpy API."""
    runtime_tasks.cancel_setup()
    runtime_client.stop_all_clients()


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    props.register_properties()
    bpy.app.handlers.load_pre.append(cancel_capture_on_load)
    atexit.register(end_processes_at_exit)


def unregister() -> None:
    atexit.unregister(end_processes_at_exit)
    capture_job.abort_capture()
    runtime_tasks.stop_runtime_tasks()
    runtime_client.stop_all_clients()
    if cancel_capture_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(cancel_capture_on_load)
    props.unregister_properties()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
