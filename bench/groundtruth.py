"""Exact ground truth for the synthetic sequences, computed analytically from the posed mesh.

The RGB frames come from Cycles (render_gt.py); every ground-truth value comes from here, by
rasterising the same posed triangles at the pixel centres (model_runtime.raster: z-buffered,
perspective-correct barycentric weights, so depth is the exact ray-plane intersection and no
value is blended across an edge: no anti-aliasing, no sampling noise).

A ground-truth frame (`ground_truth_frame`, stored as gt/NNNNNN.npz) holds:

    depth           (H, W) float32  metres along +z of whatever surface is seen; 0 = background
    canonical       (H, W, 3) float32  ICT *neutral* position (metres, ICT axes, see
                    sequences.py) of the head surface seen at the pixel; 0 elsewhere
    face_mask       (H, W) bool   front-facing face skin or eyeball (ICT regions 0, 2, 3), not
                    hidden by the occluder
    surface         (H, W) int8   sequences.SURFACE_* code of what is seen
    triangle        (H, W) int32  scene triangle seen (head triangles first, then the
                    occluder's 12); -1 = background
    barycentric     (H, W, 3) float32  weights of that triangle's vertices at the pixel centre
    vertices        (V, 3) float32  every ICT vertex in camera space (metres)
    vertex_pixels   (V, 2) float32  their projections (pixel centres at integer coordinates)
    vertex_visible  (V,) bool     in the frame and not hidden (see `visible_points`)
    intrinsics      (3, 3) float64
    head_pose       (4, 4) float64  ICT model space (metres) -> camera space
    expressions     (E,) float32  expression weights (names in sequence.npz)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from model_runtime.raster import rasterize
from .sequences import (BOX_TRIANGLES, FACE_SURFACES, SURFACE_BACKGROUND, SURFACE_INTERIOR, SURFACE_OCCLUDER,
                        FaceModel, SequenceSpec)

NEAR_PLANE_M = 0.01
# How far (metres) a point may lie behind the depth seen at its pixel and still count as
# visible: covers the depth change within half a pixel on steep skin, well under the depth
# steps of real occlusions (the nose over a cheek, the occluder in front of the face).
VISIBILITY_TOLERANCE_M = 0.008


def project(points: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(..., 3) camera-space points -> (..., 2) pixel positions."""
    uvw = np.asarray(points, np.float64) @ np.asarray(intrinsics, np.float64).T
    return uvw[..., :2] / uvw[..., 2:3]


def front_facing(pixels: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(F,) bool: the triangle (counter-clockwise seen from outside) shows its outside to the
    camera. Image y points down, so such a triangle turns clockwise on screen (negative area)."""
    a, b, c = (pixels[triangles[:, k]] for k in range(3))
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    return area < 0


def surface_points(vertices: np.ndarray, triangles: np.ndarray, triangle_ids: np.ndarray,
                   barycentric: np.ndarray) -> np.ndarray:
    """Positions of surface points given as (triangle, barycentric weights): (..., 3)."""
    corners = np.asarray(vertices, np.float64)[np.asarray(triangles)[triangle_ids]]
    return np.einsum("...k,...kd->...d", np.asarray(barycentric, np.float64), corners)


def visible_points(points: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray,
                   tolerance: float = VISIBILITY_TOLERANCE_M) -> np.ndarray:
    """(N,) bool: the point projects inside the frame and the surface seen at its nearest
    pixel is not more than `tolerance` in front of it (or nothing is seen there)."""
    height, width = depth.shape
    pixels = np.rint(project(points, intrinsics)).astype(np.int64)
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < height)
    inside &= np.asarray(points)[:, 2] > NEAR_PLANE_M
    seen = np.zeros(len(pixels))
    seen[inside] = depth[pixels[inside, 1], pixels[inside, 0]]
    return inside & ((seen == 0) | (seen >= np.asarray(points)[:, 2] - tolerance))


def scene_geometry(spec: SequenceSpec, model: FaceModel, frame: int):
    """Posed head plus occluder: (vertices (V', 3), triangles (F', 3), triangle surface codes (F',))."""
    vertices = spec.posed_vertices(model, frame)
    triangles = model.triangles
    surfaces = model.triangle_region.astype(np.int8)
    if spec.occluder is not None:
        triangles = np.concatenate([triangles, BOX_TRIANGLES + len(vertices)])
        vertices = np.concatenate([vertices, spec.occluder.corners(frame)])
        surfaces = np.concatenate([surfaces, np.full(len(BOX_TRIANGLES), SURFACE_OCCLUDER, np.int8)])
    return vertices, triangles, surfaces


def ground_truth_frame(spec: SequenceSpec, model: FaceModel, frame: int) -> dict[str, np.ndarray]:
    """Every ground-truth array of one frame (see the module docstring)."""
    vertices, triangles, surfaces = scene_geometry(spec, model, frame)
    intrinsics = spec.intrinsics()
    pixels = project(vertices, intrinsics)
    raster = rasterize(pixels, vertices[:, 2], triangles, (0, 0, spec.image_size, spec.image_size), barycentrics=True)
    hit = raster.triangle >= 0
    surface = np.full(raster.triangle.shape, SURFACE_BACKGROUND, np.int8)
    surface[hit] = surfaces[raster.triangle[hit]]
    inside_seen = hit & ~front_facing(pixels, triangles)[raster.triangle] & (surface != SURFACE_OCCLUDER)
    surface[inside_seen] = SURFACE_INTERIOR
    on_head = hit & (surface != SURFACE_OCCLUDER)
    canonical = np.zeros(raster.triangle.shape + (3,))
    canonical[on_head] = surface_points(model.neutral, model.triangles, raster.triangle[on_head],
                                        raster.barycentric[on_head])
    head = vertices[: model.vertex_count]
    return {
        "depth": raster.depth,
        "canonical": canonical.astype(np.float32),
        "face_mask": np.isin(surface, FACE_SURFACES),
        "surface": surface,
        "triangle": raster.triangle,
        "barycentric": raster.barycentric,
        "vertices": head.astype(np.float32),
        "vertex_pixels": pixels[: model.vertex_count].astype(np.float32),
        "vertex_visible": visible_points(head, raster.depth, intrinsics),
        "intrinsics": intrinsics,
        "head_pose": spec.head_pose(frame),
        "expressions": spec.expressions[frame].astype(np.float32),
    }


class RenderedSequence:
    """A folder written by render_gt.py: sequence.npz, frames/NNNNNN.png, gt/NNNNNN.npz."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        with np.load(self.folder / "sequence.npz", allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        self.spec = SequenceSpec.from_arrays(arrays)
        self.triangles = arrays["triangles"]
        self.expression_names = [str(name) for name in arrays["expression_names"]]

    @property
    def frame_count(self) -> int:
        return self.spec.frame_count

    def image_path(self, frame: int) -> Path:
        return self.folder / "frames" / f"{frame:06d}.png"

    def ground_truth(self, frame: int) -> dict[str, np.ndarray]:
        with np.load(self.folder / "gt" / f"{frame:06d}.npz", allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def surface_tracks(self, triangle_ids: np.ndarray, barycentric: np.ndarray):
        """Ground-truth tracks of surface points given on the mesh: camera positions (T, N, 3),
        pixels (T, N, 2) and visibility (T, N)."""
        positions, pixels, visible = [], [], []
        for frame in range(self.frame_count):
            truth = self.ground_truth(frame)
            points = surface_points(truth["vertices"], self.triangles, triangle_ids, barycentric)
            positions.append(points)
            pixels.append(project(points, truth["intrinsics"]))
            visible.append(visible_points(points, truth["depth"], truth["intrinsics"]))
        return np.stack(positions), np.stack(pixels), np.stack(visible)
