"""Helpers of the scene-builder tests: a clean scene, synthetic captures and footage, and the
expected answers computed independently of the code under test (plain formulas, no axes.py)."""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view

from faceanything_blender.runtime_paths import runtime_module
from faceanything_blender.scene.tags import CAPTURE_KEY
from tests.fixtures.synthetic import patch_clip, write_reconstruction

FOOTAGE_RED_BASE, FOOTAGE_RED_STEP = 40, 12  # footage frame k is filled with red = BASE + STEP * k (bytes)
FOOTAGE_GREEN, FOOTAGE_BLUE = 90, 160


@pytest.fixture
def fresh_scene():
    """A new, empty scene shown in the window; everything built into it is deleted afterwards."""
    window = bpy.context.window
    previous = window.scene
    scene = bpy.data.scenes.new("FaceAnythingSceneTest")
    window.scene = scene
    yield scene
    window.scene = previous
    objects = list(scene.objects)
    bpy.data.scenes.remove(scene)
    bpy.data.batch_remove(objects + [obj for obj in bpy.data.objects if CAPTURE_KEY in obj])
    for blocks in (bpy.data.meshes, bpy.data.cameras, bpy.data.armatures, bpy.data.actions, bpy.data.collections):
        bpy.data.batch_remove([block for block in blocks if block.users == 0])


def make_capture(folder: Path, **options):
    """Write the reconstruction of a synthetic clip (`patch_clip(**options)`); returns
    (capture_dir, the reconstruction read back)."""
    capture_dir = write_reconstruction(folder, patch_clip(**options))
    formats = runtime_module("reconstruction_format")
    return capture_dir, formats.load_reconstruction(formats.reconstruction_dir(capture_dir), memory_map=False)


def expected_world(points_opencv: np.ndarray) -> np.ndarray:
    """OpenCV camera points in the world the builder documents: camera at the origin looking
    along +Y with +Z up, so (x right, y down, z forward) -> (x, z, -y)."""
    points = np.asarray(points_opencv, np.float64)
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], axis=-1)


def pinhole_pixels(intrinsics: np.ndarray, points_opencv: np.ndarray) -> np.ndarray:
    projected = np.asarray(points_opencv, np.float64) @ np.asarray(intrinsics, np.float64).T
    return projected[:, :2] / projected[:, 2:]


def camera_pixels(scene, world_points: np.ndarray) -> np.ndarray:
    """Where the scene camera shows world points, in OpenCV pixels (pixel centres at integers;
    Blender's normalised view has them at (i + 0.5) / size, y up)."""
    width, height = scene.render.resolution_x, scene.render.resolution_y
    pixels = []
    for point in world_points:
        view = world_to_camera_view(scene, scene.camera, bpy_vector(point))
        pixels.append((view.x * width - 0.5, (1.0 - view.y) * height - 0.5))
    return np.array(pixels)


def bpy_vector(point):
    from mathutils import Vector

    return Vector(tuple(float(v) for v in point))


def evaluated_world_vertices(obj) -> np.ndarray:
    """World positions of an object's evaluated mesh at the current frame."""
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.data
    local = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", local)
    matrix = np.array(evaluated.matrix_world)
    return local.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]


def footage_red(frame_index: int) -> int:
    return FOOTAGE_RED_BASE + FOOTAGE_RED_STEP * frame_index


def write_footage(folder: Path, frame_count: int, size: tuple[int, int]) -> Path:
    """A PNG sequence (000000.png ...) whose frame k is one flat colour with red = footage_red(k);
    returns the first file."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    image = bpy.data.images.new("footage-writer", width, height)
    image.file_format = "PNG"
    try:
        for k in range(frame_count):
            colour = np.array([footage_red(k), FOOTAGE_GREEN, FOOTAGE_BLUE, 255]) / 255.0
            image.pixels.foreach_set(np.tile(colour, width * height).astype(np.float32))
            image.filepath_raw = str(folder / f"{k:06d}.png")
            image.save()
    finally:
        bpy.data.images.remove(image)
    return folder / "000000.png"
