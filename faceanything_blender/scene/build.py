"""One capture's reconstruction as Blender data: camera, footage, face mesh, empties.

Compute, then apply: the arrays come finished from the runtime's reconstruction folder, are
converted to Blender axes in `axes`, and are written in bulk. Layout (see axes.py)::

    <collection named after the footage>       tagged with the capture id
      FA_<name>          root empty at the origin (move it to move the whole capture)
        FA_camera        the footage's camera, footage as its background
        FA_face          the face mesh (Mesh Cache modifier or shape keys)
        FA_head          the head's rigid motion
          FA_<point>     one empty per tracked point (Location = offset from rest)
        FA_expressions   the ARKit-52 curves as custom properties (scene/expressions.py), when
                         the reconstruction has them

Re-running a capture deletes the objects, data and actions tagged with its id (the resolved
capture folder) and reuses its collection; nothing untagged is touched.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from . import runtime_modules
from .animation import animate
from .axes import canonical_to_head, head_pose_to_world, opencv_points_to_world, point_offsets_in_head_axes
from .camera import camera_lens, configure_render, create_camera
from .expressions import add_expression_control
from .empties import HEAD_SIZE_M, POINT_SIZE_M, ROOT_SIZE_M, animate_point, create_empty, head_transform_curves
from .mesh import add_point_cache, add_shape_keys, create_face_mesh, write_pc2
from .tags import CAPTURE_KEY, POINT_KEY
from .timing import CaptureTiming, capture_timing

ANIMATION_MODES = ("POINT_CACHE", "SHAPE_KEYS")
# Above this many frames shape keys make playback slow. Each frame evaluates every key's curve,
# and each curve finds its key by name in a list, so the cost grows with the square of the
# count: for 8k vertices about 3 ms a frame at 300 keys, 10 ms at 500, 40-90 ms at 1,000 (below
# 25 fps), 120-200 ms at 2,000; a point cache takes about 1 ms (faceanything_blender.bench).
SHAPE_KEY_WARN_FRAMES = 500
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".bmp", ".webp"}


def build_from_capture(
    context, capture_dir: Path, *, footage: str, animation: str = "POINT_CACHE", name: str | None = None
) -> dict:
    """Build (or rebuild) a capture in ``context.scene``; see `build_capture`."""
    return build_capture(context.scene, Path(capture_dir), footage=footage, animation=animation, name=name)


def build_capture(
    scene: bpy.types.Scene, capture_dir: Path, *, footage: str, animation: str = "POINT_CACHE", name: str | None = None
) -> dict:
    """Build a capture's reconstruction into ``scene`` and set the scene's camera, frame rate,
    frame range and resolution to the footage's.

    ``footage``: the video file, first image or image folder the capture was made from (the
    camera's background). ``animation``: 'POINT_CACHE' (a .pc2 file; any length) or
    'SHAPE_KEYS' (inside the .blend). Returns the names of what was made, the cache path, the
    frame range and ``warnings`` (list of str) for the user.
    """
    capture_dir = Path(capture_dir).resolve()
    reconstruction, timing = read_capture(capture_dir, animation)
    capture_id = str(capture_dir)
    remove_capture(capture_id)
    collection = capture_collection(scene, capture_id, name or capture_name(footage, capture_dir))
    made = CaptureData(collection, capture_id, bpy.data.actions.new(f"FA_{collection.name}"))
    made.tag(made.action)
    warnings: list[str] = []
    clip = load_footage(footage, reconstruction.frame_size, warnings)
    lens = camera_lens(reconstruction.intrinsics, *reconstruction.frame_size)
    configure_scene(scene, timing, clip)
    configure_render(scene, *reconstruction.frame_size, lens)

    frames = timing.scene_frames.astype(np.float64)
    root = made.place(create_empty(f"FA_{collection.name}", "PLAIN_AXES", ROOT_SIZE_M))
    camera = made.place(create_camera("FA_camera", lens, frames, made.action, clip), root)
    made.tag(camera.data)
    scene.camera = camera
    head = made.place(create_empty("FA_head", "ARROWS", HEAD_SIZE_M), root)
    animate(head, made.action, head_transform_curves(frames, head_pose_to_world(reconstruction.head_pose)))
    points = build_point_empties(made, reconstruction, frames, head)
    face, cache_path = build_face(made, reconstruction, timing, animation, root, capture_dir, warnings)
    expressions = add_expression_control(made, capture_dir, timing, root, warnings)
    return {
        "collection": collection.name,
        "root": root.name,
        "camera": camera.name,
        "mesh": face.name,
        "head": head.name,
        "points": points,
        "expressions": expressions.name if expressions else None,
        "animation": animation,
        "cache_path": cache_path,
        "frame_start": timing.first,
        "frame_end": timing.last,
        "fps": timing.fps / timing.fps_base,
        "clip": clip.name if clip else None,
        "warnings": warnings,
    }


@dataclass
class CaptureData:
    """Where a build puts what it makes, and the id it tags it with."""

    collection: bpy.types.Collection
    capture_id: str
    action: bpy.types.Action  # one action animates every object of the capture, a slot each

    def tag(self, datablock: bpy.types.ID) -> None:
        datablock[CAPTURE_KEY] = self.capture_id

    def place(self, obj: bpy.types.Object, parent: bpy.types.Object | None = None) -> bpy.types.Object:
        """Link ``obj`` into the capture's collection, tag it and parent it (parent inverse kept)."""
        self.collection.objects.link(obj)
        self.tag(obj)
        obj.parent = parent
        return obj


def read_capture(capture_dir: Path, animation: str):
    """The reconstruction and its timing; `InputError` saying what to do when unusable."""
    errors = runtime_modules.errors()
    if animation not in ANIMATION_MODES:
        raise errors.InputError(f"Unknown animation mode {animation!r}", f"Use one of {', '.join(ANIMATION_MODES)}.")
    formats = runtime_modules.reconstruction_format()
    try:
        reconstruction = formats.load_reconstruction(formats.reconstruction_dir(capture_dir), memory_map=True)
    except (OSError, ValueError, KeyError) as exc:
        raise errors.InputError(
            f"The reconstruction in {capture_dir} cannot be read: {exc}",
            "Run the reconstruction again (python -m model_runtime reconstruct CAPTURE_DIR).",
        ) from exc
    timing = capture_timing(reconstruction.source_indices, float(reconstruction.header["fps"]))
    if timing is None:
        raise errors.InputError(
            f"The captured frames of {capture_dir} are not evenly spaced in the footage",
            "Capture again with one frame step for the whole range.",
        )
    return reconstruction, timing


def build_point_empties(made: CaptureData, reconstruction, frames: np.ndarray, head) -> dict[str, str]:
    """One empty per tracked point under ``head``; returns point name -> object name."""
    offsets = point_offsets_in_head_axes(
        reconstruction.head_pose, reconstruction.point_positions, reconstruction.point_canonical
    )
    rest = canonical_to_head(reconstruction.point_canonical)
    names = {}
    for p, point in enumerate(reconstruction.point_names):
        empty = made.place(create_empty(f"FA_{point}", "PLAIN_AXES", POINT_SIZE_M), head)
        empty[POINT_KEY] = point
        animate_point(empty, rest[p], frames, offsets[:, p], made.action)
        names[point] = empty.name
    return names


def build_face(
    made: CaptureData,
    reconstruction,
    timing: CaptureTiming,
    animation: str,
    root: bpy.types.Object,
    capture_dir: Path,
    warnings: list[str],
) -> tuple[bpy.types.Object, str | None]:
    """The face mesh, shaped as frame 0, animated by a point cache or shape keys; returns it and
    the cache path the modifier reads (None for shape keys)."""
    vertices = reconstruction.vertices
    mesh = create_face_mesh("FA_face", opencv_points_to_world(vertices[0]), reconstruction.triangles, reconstruction.uv)
    made.tag(mesh)
    face = made.place(bpy.data.objects.new("FA_face", mesh), root)
    if animation == "SHAPE_KEYS":
        if reconstruction.frame_count > SHAPE_KEY_WARN_FRAMES:
            warnings.append(
                f"{reconstruction.frame_count} shape keys make playback slow above {SHAPE_KEY_WARN_FRAMES} frames; "
                "the Point Cache animation mode plays any length quickly."
            )
        add_shape_keys(face, vertices, timing, made.action)
        return face, None
    cache_file, cache_path = point_cache_location(capture_dir, made.collection.name)
    write_pc2(cache_file, vertices, timing)
    add_point_cache(face, cache_path, timing)
    return face, cache_path


def remove_capture(capture_id: str) -> None:
    """Delete the objects, object data and actions a previous build of this capture made."""
    objects = [obj for obj in bpy.data.objects if obj.get(CAPTURE_KEY) == capture_id]
    data = [obj.data for obj in objects if obj.data is not None and obj.data.get(CAPTURE_KEY) == capture_id]
    bpy.data.batch_remove(objects)
    # Data still used elsewhere (a user's linked duplicate) stays.
    bpy.data.batch_remove([block for block in data if block.users == 0])
    bpy.data.batch_remove([action for action in bpy.data.actions if action.get(CAPTURE_KEY) == capture_id])


def capture_collection(scene: bpy.types.Scene, capture_id: str, name: str) -> bpy.types.Collection:
    """The capture's collection (reused, keeping any name the user gave it) linked into ``scene``."""
    collection = next((c for c in bpy.data.collections if c.get(CAPTURE_KEY) == capture_id), None)
    if collection is None:
        collection = bpy.data.collections.new(name)
        collection[CAPTURE_KEY] = capture_id
    if collection not in set(scene.collection.children_recursive):
        scene.collection.children.link(collection)
    return collection


def capture_name(footage: str, capture_dir: Path) -> str:
    """The footage's file or folder name without extension, else the capture folder's."""
    stem = Path(footage.rstrip("/\\")).stem if footage else ""
    return stem or capture_dir.name


def footage_file(footage: str) -> Path | None:
    """The file Blender loads for ``footage``: itself, or the first image of a folder."""
    path = Path(bpy.path.abspath(footage))
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return images[0] if images else None
    return path if path.is_file() else None


def load_footage(footage: str, frame_size: tuple[int, int], warnings: list[str]) -> bpy.types.MovieClip | None:
    """The footage as a movie clip starting at scene frame 1, or None (with a warning)."""
    path = footage_file(footage) if footage else None
    if path is None:
        warnings.append(f"Footage {footage!r} was not found: the camera shows no background. Load it as a movie clip.")
        return None
    try:
        clip = bpy.data.movieclips.load(str(path), check_existing=True)
    except RuntimeError as exc:
        warnings.append(f"Blender cannot read the footage {path} ({exc}): the camera shows no background.")
        return None
    clip.frame_start = 1
    if tuple(clip.size) != tuple(frame_size):
        warnings.append(
            f"Blender reads {path.name} as {clip.size[0]}x{clip.size[1]} but it was captured as "
            f"{frame_size[0]}x{frame_size[1]} (rotation metadata?): the background will not line up."
        )
    return clip


def configure_scene(scene: bpy.types.Scene, timing: CaptureTiming, clip: bpy.types.MovieClip | None) -> None:
    scene.render.fps, scene.render.fps_base = timing.fps, timing.fps_base
    scene.frame_start, scene.frame_end = timing.first, timing.last
    if clip is not None:
        scene.active_clip = clip


def point_cache_location(capture_dir: Path, name: str) -> tuple[Path, str]:
    """Where the PC2 file goes and the path the modifier stores: beside the saved .blend
    (``<blend>_faceanything/<name>.pc2``, relative, so the project folder can move), or in the
    capture folder while the .blend is unsaved."""
    file_name = re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".pc2"
    if bpy.data.filepath:
        blend = Path(bpy.data.filepath)
        path = blend.parent / f"{blend.stem}_faceanything" / file_name
        return path, bpy.path.relpath(str(path))
    path = capture_dir / file_name
    return path, str(path)
