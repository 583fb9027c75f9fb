"""The one place that turns the runtime's OpenCV camera coordinates into Blender's.

The runtime works in OpenCV camera space: x right, y down, z forward (away from the camera),
metres. A capture's Blender scene puts that camera at the world origin looking along world +Y
with world +Z up, the way Blender's front view looks at a model, so a face that looks into the
lens stands upright and faces -Y like a rig does. Then

    world = (x, z, -y)        for an OpenCV camera point (x, y, z),

a proper rotation, so triangle winding and handedness are kept. Everything a capture creates
sits at world positions under a root empty at the origin: move the root and the camera, mesh
and empties move together and still line up.

Head-relative motion is written in *head axes*: +X toward the subject's left, +Y toward the
back of the head, +Z up. For a face looking into the lens they coincide with world axes, and
they are the armature-space axes of a rig built facing -Y (Rigify), so captured offsets can be
added to bones without any remapping. The runtime's canonical face space (+X subject's left,
+Y up, +Z out of the face) maps to head axes by (x, -z, y).

No bpy here: plain numpy, so it can be checked against the conventions directly.
"""
from __future__ import annotations

import math

import numpy as np

OPENCV_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
CANONICAL_TO_HEAD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

# Blender cameras look down their local -Z with local +Y up; this rotation points that view
# along world +Y with the camera's up along world +Z, matching OPENCV_TO_WORLD.
CAMERA_ROTATION_EULER = (math.pi / 2, 0.0, 0.0)


def _homogeneous(rotation: np.ndarray) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    return matrix


def opencv_points_to_world(points: np.ndarray) -> np.ndarray:
    """(..., 3) OpenCV camera points -> world points, float32 (a view-free reindexing)."""
    points = np.asarray(points)
    world = np.empty(points.shape, np.float32)
    world[..., 0] = points[..., 0]
    world[..., 1] = points[..., 2]
    world[..., 2] = -points[..., 1]
    return world


def head_pose_to_world(head_pose: np.ndarray) -> np.ndarray:
    """(T, 4, 4) canonical -> OpenCV camera transforms -> (T, 4, 4) world matrices of the head
    empty, whose local axes are head axes."""
    return _homogeneous(OPENCV_TO_WORLD) @ np.asarray(head_pose, np.float64) @ _homogeneous(CANONICAL_TO_HEAD.T)


def canonical_to_head(points: np.ndarray) -> np.ndarray:
    """(..., 3) canonical-space points or offsets -> head axes."""
    return np.asarray(points, np.float64) @ CANONICAL_TO_HEAD.T


def point_offsets_in_head_axes(
    head_pose: np.ndarray, positions: np.ndarray, rest_canonical: np.ndarray
) -> np.ndarray:
    """How far each point has moved from its rest place on the face, in head axes.

    head_pose (T, 4, 4) canonical -> camera, positions (T, P, 3) camera space, rest_canonical
    (P, 3). Returns (T, P, 3): the head's own motion removed, only the expression left.
    """
    camera_to_canonical = np.linalg.inv(np.asarray(head_pose, np.float64))
    positions = np.asarray(positions, np.float64)
    rotation, translation = camera_to_canonical[:, :3, :3], camera_to_canonical[:, None, :3, 3]
    canonical = np.einsum("tij,tpj->tpi", rotation, positions) + translation
    return canonical_to_head(canonical - np.asarray(rest_canonical, np.float64)[None])


def opencv_pixels_to_clip(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """(..., 2) OpenCV pixel positions -> Movie Clip normalised coordinates, float64.

    OpenCV puts the centre of pixel (row r, column c) at (x=c, y=r), y down. Blender's Movie
    Clip (markers, the tracking camera's principal point) spans 0..1 from the frame's
    bottom-left corner, y up, with pixel i covering [i, i + 1] (its centre at i + 0.5;
    tests/blender/test_scene_tracks.py checks this against Blender's own feature detector).
    """
    pixels = np.asarray(pixels, np.float64)
    clip = np.empty(pixels.shape, np.float64)
    clip[..., 0] = (pixels[..., 0] + 0.5) / width
    clip[..., 1] = 1.0 - (pixels[..., 1] + 0.5) / height
    return clip
