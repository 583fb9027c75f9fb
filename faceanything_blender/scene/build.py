"""One capture's reconstruction as Blender data: camera, footage, face mesh, empties.

Compute, then apply: the arrays come finished from the runtime's reconstruction folder, are
converted to Blender axes in `axes`, and are written in bulk. Layout (see axes.py)::

    <collection named after the footage>       tagged with the capture id
      FA_<name>          root empty at the origin (move it to move the whole capture)
        FA_camera        the footage's camera, footage as its background
        FA_face          the face mesh (Mesh Cache modifier or shape keys)
        FA_head          the head's rigid motion
          FA_<point>     one empty per tracked point (Location = offset from rest,
                         custom property ``visible`` keyed 1 seen / 0 hidden)
        FA_expressions   the ARKit-52 curves as custom properties (scene/expressions.py), when
                         the reconstruction has them

The footage's movie clip gets the capture's intrinsics as its tracking camera and one 2D track
per point, named like the empties (tracks.py). A video Blender decodes differently from the
runtime is replaced by an image sequence of the runtime's frames (decoding.py).

Re-running a capture deletes the objects, data and actions it made (recorded on its collection,
see tags.py; copies an artist made with Shift+D or Alt+D are kept) and reuses its collection.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from ..runtime_paths import runtime_module
from .animation import animate
from .axes import canonical_to_head, head_pose_to_world, opencv_points_to_world, point_offsets_in_head_axes
from .camera import camera_lens, configure_render, configure_tracking_camera, create_camera
from .decoding import check_footage_decoding
from .expressions import add_expression_control
from .empties import HEAD_SIZE_M, POINT_SIZE_M, ROOT_SIZE_M, animate_point, create_empty, head_transform_curves
from .mesh import add_point_cache, add_shape_keys, create_face_mesh, write_pc2
from .tags import CAPTURE_KEY, POINT_KEY, record_made, take_made
from .timing import CaptureTiming, capture_timing
from .tracks import write_tracks

ANIMATION_MODES = ("POINT_CACHE", "SHAPE_KEYS")
# Above this many frames shape keys make playback slow. Each frame evaluates every key's curve,
# and each curve finds its key by name in a list, so the cost grows with the square of the
# count: for 8k vertices about 3 ms a frame at 300 keys, 10 ms at 500, 40-90 ms at 1,000 (below
# 25 fps), 120-200 ms at 2,000; a point cache takes about 1 ms (bench/scene.py).
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
    capture_id = capture_identity(footage, capture_dir)
    bindings = constraints_on(capture_id)
    remove_capture(capture_id)
    collection = capture_collection(scene, capture_id, name or capture_name(footage, capture_dir))
    made = CaptureData(collection, capture_id, bpy.data.actions.new(f"FA_{collection.name}"))
    made.tag(made.action)
    warnings: list[str] = []
    first_number = int(reconstruction.frame_numbers[0] - reconstruction.source_indices[0])
    clip = load_footage(footage, reconstruction.frame_size, first_number, warnings)
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
    clip = footage_as_captured(scene, clip, camera, reconstruction, timing, capture_dir, collection.name, warnings)
    tracks = build_clip_tracking(clip, reconstruction, timing, points)
    expressions = add_expression_control(made, capture_dir, timing, root, warnings)
    restore_constraints(bindings)
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
        "tracks": tracks,
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
        record_made(self.collection, datablock)

    def place(self, obj: bpy.types.Object, parent: bpy.types.Object | None = None) -> bpy.types.Object:
        """Link ``obj`` into the capture's collection, tag it and parent it (parent inverse kept)."""
        self.collection.objects.link(obj)
        self.tag(obj)
        obj.parent = parent
        return obj


def read_capture(capture_dir: Path, animation: str):
    """The reconstruction and its timing; `InputError` saying what to do when unusable."""
    errors = runtime_module("errors")
    if animation not in ANIMATION_MODES:
        raise errors.InputError(f"Unknown animation mode {animation!r}", f"Use one of {', '.join(ANIMATION_MODES)}.")
    formats = runtime_module("reconstruction_format")
    try:
        reconstruction = formats.load_reconstruction(formats.reconstruction_dir(capture_dir), memory_map=True)
    except (OSError, ValueError, KeyError) as exc:
        raise errors.InputError(
            f"The reconstruction in {capture_dir} cannot be read: {exc}",
            "Run the reconstruction again (python -m model_runtime reconstruct CAPTURE_DIR).",
        ) from exc
    timing = capture_timing(reconstruction.frame_numbers, float(reconstruction.header["fps"]))
    if timing is None:
        raise errors.InputError(
            f"The captured frames of {capture_dir} are not evenly spaced in the footage",
            "Capture again with one frame step for the whole range.",
        )
    return reconstruction, timing


def capture_face_timing(face: bpy.types.Object, animation: str) -> tuple[Path, CaptureTiming]:
    """The capture folder and timing of a capture's face (from its tag), to animate it by
    ``animation``."""
    capture_dir = Path(face[CAPTURE_KEY])
    return capture_dir, read_capture(capture_dir, animation)[1]


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
        animate_point(empty, rest[p], frames, offsets[:, p], reconstruction.point_visible[:, p], made.action)
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
        add_shape_keys(face, lambda t: opencv_points_to_world(vertices[t]), timing, made.action)
        return face, None
    cache_file, cache_path = point_cache_location(capture_dir, made.collection.name)
    write_pc2(cache_file, vertices, timing)
    add_point_cache(face, cache_path, timing)
    return face, cache_path


def build_clip_tracking(clip, reconstruction, timing: CaptureTiming, points: dict[str, str]) -> list[str]:
    """The clip's tracking camera and one track per point (named like its empty); returns the
    track names. Nothing when the clip is not the captured size (it would not line up)."""
    if clip is None or tuple(clip.size) != reconstruction.frame_size:
        return []
    configure_tracking_camera(clip, reconstruction.intrinsics, *reconstruction.frame_size)
    names = [points[name] for name in reconstruction.point_names]
    return write_tracks(
        clip, names, reconstruction.point_pixels, reconstruction.point_visible, timing.scene_frames,
        reconstruction.frame_size,
    )


def capture_identity(footage: str, capture_dir: Path) -> str:
    """What makes two captures the same one: the footage (a new capture of it with other settings
    replaces the old), or the capture folder when there is no footage to name."""
    return str(Path(footage).resolve()) if footage else str(capture_dir)


def constraints_on(capture_id: str) -> list[tuple[str, str, str, str]]:
    """(armature, bone, constraint, target name) of every bone constraint aimed at an object of
    the capture, so that a rebuild can aim them at the new objects of the same names."""
    made = {block.name for c in bpy.data.collections if c.get(CAPTURE_KEY) == capture_id
            for block in c.objects}
    return [
        (armature.name, pose_bone.name, constraint.name, constraint.target.name)
        for armature in bpy.data.objects if armature.type == "ARMATURE"
        for pose_bone in armature.pose.bones
        for constraint in pose_bone.constraints
        if getattr(constraint, "target", None) is not None and constraint.target.name in made
    ]


def restore_constraints(bindings: list[tuple[str, str, str, str]]) -> None:
    for armature, bone, constraint, target in bindings:
        if armature in bpy.data.objects and target in bpy.data.objects:
            pose_bone = bpy.data.objects[armature].pose.bones.get(bone)
            if pose_bone is not None and constraint in pose_bone.constraints:
                pose_bone.constraints[constraint].target = bpy.data.objects[target]


def remove_capture(capture_id: str) -> None:
    """Delete the objects, object data and actions a previous build of this capture made."""
    made = [block for c in bpy.data.collections if c.get(CAPTURE_KEY) == capture_id for block in take_made(c)]
    objects = [block for block in made if isinstance(block, bpy.types.Object)]
    actions = [block for block in made if isinstance(block, bpy.types.Action)]
    data = [block for block in made if block not in objects and block not in actions]
    bpy.data.batch_remove(objects)
    # Then object data, then actions (a mesh's shape keys use one): each step frees users of the
    # next. What a user's linked duplicate still uses stays.
    bpy.data.batch_remove([block for block in data if block.users == 0])
    bpy.data.batch_remove([block for block in actions if block.users == 0])


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


def load_footage(
    footage: str, frame_size: tuple[int, int], first_number: int, warnings: list[str]
) -> bpy.types.MovieClip | None:
    """The footage as a movie clip whose first frame plays at scene frame `first_number` (the
    footage's own number of its first frame), or None (with a warning). Its path is stored
    relative to the .blend when the .blend is saved (and on the same drive)."""
    path = footage_file(footage) if footage else None
    if path is None:
        warnings.append(f"Footage {footage!r} was not found: the camera shows no background. Load it as a movie clip.")
        return None
    try:
        clip = bpy.data.movieclips.load(str(path), check_existing=True)
    except RuntimeError as exc:
        warnings.append(f"Blender cannot read the footage {path} ({exc}): the camera shows no background.")
        return None
    clip.frame_start = first_number
    if bpy.data.filepath:
        try:
            clip.filepath = bpy.path.relpath(str(path))
        except ValueError:  # another drive than the .blend's: only an absolute path can reach it
            pass
    if tuple(clip.size) != tuple(frame_size):
        warnings.append(
            f"Blender reads {path.name} as {clip.size[0]}x{clip.size[1]} but it was captured as "
            f"{frame_size[0]}x{frame_size[1]} (rotation metadata?): the background will not line up."
        )
    return clip


def footage_as_captured(
    scene, clip, camera, reconstruction, timing: CaptureTiming, capture_dir: Path, name: str, warnings: list[str]
) -> bpy.types.MovieClip | None:
    """The clip the background plays: ``clip``, or an image sequence of the frames the runtime
    decoded when Blender decodes the video differently (decoding.py)."""
    if clip is None or Path(clip.filepath).suffix.lower() in IMAGE_SUFFIXES:
        return clip
    if tuple(clip.size) != reconstruction.frame_size:  # already warned: it will not line up anyway
        return clip
    checked = check_footage_decoding(
        scene, clip, Path(bpy.path.abspath(clip.filepath)), reconstruction.source_indices, timing.scene_frames,
        beside_blend(capture_dir, f"{safe_file_name(name)}_footage"), warnings,
    )
    if checked != clip:
        scene.active_clip = checked
        camera.data.background_images[0].clip = checked
    return checked


def configure_scene(scene: bpy.types.Scene, timing: CaptureTiming, clip: bpy.types.MovieClip | None) -> None:
    scene.render.fps, scene.render.fps_base = timing.fps, timing.fps_base
    scene.frame_start, scene.frame_end = timing.first, timing.last
    if clip is not None:
        scene.active_clip = clip


def point_cache_location(capture_dir: Path, name: str) -> tuple[Path, str]:
    """Where the PC2 file goes and the path the modifier stores (see `beside_blend`)."""
    return beside_blend(capture_dir, safe_file_name(name) + ".pc2")


def beside_blend(capture_dir: Path, file_name: str) -> tuple[Path, str]:
    """Where a file the build writes goes and the path Blender stores: beside the saved .blend
    (``<blend>_faceanything/<file_name>``, relative, so the project folder can move), or in
    the capture folder while the .blend is unsaved."""
    if bpy.data.filepath:
        blend = Path(bpy.data.filepath)
        path = blend.parent / f"{blend.stem}_faceanything" / file_name
        return path, bpy.path.relpath(str(path))
    path = capture_dir / file_name
    return path, str(path)


def safe_file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)
