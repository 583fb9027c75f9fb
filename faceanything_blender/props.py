"""The add-on's settings on each scene (``Scene.faceanything``): footage, options and job status.

The status fields are written by the capture timer on the main thread, so the panel only reads
properties; they are not animatable and carry nothing the next capture needs, except
``capture_dir`` (the folder a cancelled or failed capture resumes from).
"""
from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .rig_props import FACEANYTHING_PG_rig_binding

FOOTAGE_SOURCES = [
    ("FILE", "Video File", "A video file on disk"),
    ("FOLDER", "Image Folder", "A folder of numbered images"),
    ("CLIP", "Movie Clip", "A movie clip already loaded in this file"),
]
BACKENDS = [
    ("mediapipe", "MediaPipe", "Face landmarks and a fitted template; fast, runs on the CPU"),
    ("faceanything", "Face Anything", "The Face Anything network (needs its checkpoint; a GPU is advised)"),
]
FOCAL_MODES = [
    ("UNKNOWN", "Unknown", "Let the runtime choose (the network solves it; landmarks assume a 50 degree view)"),
    ("MM", "Millimetres", "Focal length in millimetres, 35 mm equivalent"),
    ("PX", "Pixels", "Focal length in pixels of the footage"),
]
MESH_MODES = [
    ("TEMPLATE", "Template", "A fixed face topology that follows the footage"),
    ("DENSE", "Dense", "A mesh made from the depth maps"),
]
DENSITIES = [("LOW", "Low", ""), ("MEDIUM", "Medium", ""), ("HIGH", "High", "")]
ANIMATION_MODES = [
    ("POINT_CACHE", "Point Cache", "Vertex positions in a .pc2 file next to the .blend (small file, fast)"),
    ("SHAPE_KEYS", "Shape Keys", "One shape key per frame inside the .blend (self-contained, larger)"),
]
STATUSES = [
    ("IDLE", "Idle", ""),
    ("RUNNING", "Running", ""),
    ("DONE", "Done", ""),
    ("CANCELLED", "Cancelled", ""),
    ("ERROR", "Error", ""),
]
NOT_ANIMATABLE: set = set()


def _is_armature(_settings, obj) -> bool:
    return obj.type == "ARMATURE"


class FACEANYTHING_PG_settings(bpy.types.PropertyGroup):
    # Footage
    footage_source: EnumProperty(name="Footage", items=FOOTAGE_SOURCES, default="FILE")
    footage_file: StringProperty(name="Video", subtype="FILE_PATH", description="Video file of a face")
    footage_folder: StringProperty(name="Images", subtype="DIR_PATH", description="Folder of numbered images")
    footage_clip: PointerProperty(name="Clip", type=bpy.types.MovieClip, description="Movie clip in this file")
    # Frames (footage frame numbers from 1, last included)
    use_frame_range: BoolProperty(name="Frame Range", description="Capture part of the footage only")
    frame_first: IntProperty(name="First", min=1, default=1)
    frame_last: IntProperty(name="Last", min=1, default=250)
    frame_step: IntProperty(name="Step", min=1, default=1, description="Capture every Nth frame")
    # Backend and camera
    backend: EnumProperty(name="Backend", items=BACKENDS, default="mediapipe")
    focal_mode: EnumProperty(name="Focal Length", items=FOCAL_MODES, default="UNKNOWN")
    focal_mm: FloatProperty(name="Focal Length", min=1.0, max=5000.0, default=35.0, unit="CAMERA")
    focal_px: FloatProperty(name="Focal Length (px)", min=1.0, max=100000.0, default=1000.0)
    # Reconstruction
    mesh: EnumProperty(name="Mesh", items=MESH_MODES, default="TEMPLATE")
    density: EnumProperty(name="Density", items=DENSITIES, default="HIGH")
    animation: EnumProperty(name="Animation", items=ANIMATION_MODES, default="POINT_CACHE")
    smooth: BoolProperty(name="Smooth Motion", default=True, description="Temporal smoothing of the motion")
    points: StringProperty(
        name="Points",
        description="Extra tracked points, separated by spaces: names, canonical X,Y,Z or pixel:FRAME:X:Y",
    )
    # Rig (driven by rig_props; edited by the rig panel)
    rig_armature: PointerProperty(name="Armature", type=bpy.types.Object, poll=_is_armature)
    rig_bindings: CollectionProperty(type=FACEANYTHING_PG_rig_binding)
    # Job status (written by the capture timer)
    status: EnumProperty(name="Status", items=STATUSES, default="IDLE", options=NOT_ANIMATABLE)
    stage: StringProperty(options=NOT_ANIMATABLE)
    frames_done: IntProperty(options=NOT_ANIMATABLE)
    frames_total: IntProperty(options=NOT_ANIMATABLE)
    frames_per_second: FloatProperty(options=NOT_ANIMATABLE)
    seconds_left: FloatProperty(default=-1.0, options=NOT_ANIMATABLE)
    warning_count: IntProperty(options=NOT_ANIMATABLE)
    last_warning: StringProperty(options=NOT_ANIMATABLE)
    last_error: StringProperty(options=NOT_ANIMATABLE)
    last_hint: StringProperty(options=NOT_ANIMATABLE)
    last_log: StringProperty(options=NOT_ANIMATABLE, description="The runtime's last messages, one per line")
    last_result: StringProperty(options=NOT_ANIMATABLE)
    capture_dir: StringProperty(subtype="DIR_PATH", options=NOT_ANIMATABLE)


classes = (FACEANYTHING_PG_settings,)


def register_properties() -> None:
    bpy.types.Scene.faceanything = PointerProperty(type=FACEANYTHING_PG_settings)


def unregister_properties() -> None:
    del bpy.types.Scene.faceanything
