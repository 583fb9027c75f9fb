"""A synthetic reconstruction folder with known answers, for the scene tests and the benchmark.

A curved grid patch (a stand-in face) moves rigidly and deforms over the frames; its tracked
points' pixels are the exact pinhole projections ``x = fx X / Z + cx, y = fy Y / Z + cy``
(OpenCV: the centre of pixel 0 is 0). Written in the layout `reconstruction_format` documents.
numpy only; no bpy.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import runtime_modules

NAMED_POINTS = {  # point -> (u, v) position on the patch, both in [0, 1]; u toward the subject's left
    "mouth_corner_L": (0.7, 0.25),
    "mouth_corner_R": (0.3, 0.25),
    "nose_tip": (0.5, 0.55),
    "chin": (0.5, 0.0),
    "brow_mid_L": (0.8, 0.85),
    "brow_mid_R": (0.2, 0.85),
}
HALF_WIDTH_M, HALF_HEIGHT_M, BULGE_M = 0.08, 0.10, 0.03


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    about_z = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return about_z @ about_x @ about_y


def patch(grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (V, 3) canonical, triangles (F, 3) counter-clockwise seen from +Z, uv (V, 2))."""
    u, v = np.meshgrid(np.linspace(0, 1, grid), np.linspace(0, 1, grid))
    x, y = (u * 2 - 1) * HALF_WIDTH_M, (v * 2 - 1) * HALF_HEIGHT_M
    z = BULGE_M * (1 - (x / HALF_WIDTH_M) ** 2 * 0.5 - (y / HALF_HEIGHT_M) ** 2 * 0.5)
    vertices = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    index = np.arange(grid * grid).reshape(grid, grid)
    a, b, c, d = index[:-1, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, 1:].ravel(), index[1:, :-1].ravel()
    triangles = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)
    return vertices, triangles, np.stack([u.ravel(), v.ravel()], axis=1).astype(np.float32)


def head_poses(frame_count: int) -> np.ndarray:
    """(T, 4, 4) canonical -> camera: the face looks into the lens about 0.45 m away and turns,
    nods, tilts and drifts a little."""
    frontal = np.diag([1.0, -1.0, -1.0])  # canonical +Y up -> image up, +Z out of the face -> toward the camera
    poses = np.tile(np.eye(4), (frame_count, 1, 1))
    for t in range(frame_count):
        poses[t, :3, :3] = frontal @ _rotation(0.25 * np.sin(0.3 * t), 0.12 * np.sin(0.2 * t), 0.06 * np.sin(0.1 * t))
        poses[t, :3, 3] = [0.02 * np.sin(0.4 * t), -0.01 * np.cos(0.25 * t), 0.45 + 0.03 * np.sin(0.15 * t)]
    return poses


def expression(canonical: np.ndarray, t: int) -> np.ndarray:
    """The patch at frame t: a smile-like stretch and a breathing bulge, up to a few mm."""
    x, y = canonical[:, 0] / HALF_WIDTH_M, canonical[:, 1] / HALF_HEIGHT_M
    stretch, lift = 0.004 * np.sin(0.5 * t), 0.003 * np.cos(0.35 * t)
    offset = np.stack([stretch * x, lift * y, 1.25 * stretch * (1 - x**2)], 1)
    return canonical + offset


def point_vertices(grid: int, point_count: int) -> tuple[list[str], np.ndarray]:
    """Names and vertex indices of tracked points: the named ones, then ``landmark_NN``."""
    names = list(NAMED_POINTS)[:point_count]
    indices = [round(v * (grid - 1)) * grid + round(u * (grid - 1)) for u, v in NAMED_POINTS.values()][:point_count]
    extra = np.random.default_rng(0).choice(grid * grid, size=max(0, point_count - len(names)), replace=False)
    names += [f"landmark_{k:02d}" for k in range(len(extra))]
    return names, np.array(indices + extra.tolist(), np.int64)


def write_synthetic_capture(
    capture_dir: Path,
    *,
    frame_size: tuple[int, int] = (360, 288),
    frame_count: int = 12,
    grid: int = 12,
    focal: tuple[float, float] = (420.0, 420.0),
    principal: tuple[float, float] | None = None,
    focal_wobble: float = 0.0,
    point_count: int = len(NAMED_POINTS),
    first_source_index: int = 0,
    step: int = 1,
    fps: float = 25.0,
) -> Path:
    """Write ``capture_dir/reconstruction/``; returns capture_dir.

    ``principal`` defaults to 12 px right and 7 px below the frame centre. ``focal_wobble``
    makes the focal length vary by that fraction over the frames (a network backend's
    per-frame intrinsics).
    """
    formats = runtime_modules.reconstruction_format()
    width, height = frame_size
    cx, cy = principal if principal is not None else ((width - 1) / 2 + 12.0, (height - 1) / 2 + 7.0)
    canonical, triangles, uv = patch(grid)
    poses = head_poses(frame_count)
    names, point_index = point_vertices(grid, point_count)
    folder = formats.reconstruction_dir(capture_dir)
    folder.mkdir(parents=True, exist_ok=True)

    vertices = np.lib.format.open_memmap(folder / "vertices.npy", mode="w+", dtype=np.float32,
                                         shape=(frame_count, len(canonical), 3))
    positions = np.empty((frame_count, len(names), 3), np.float32)
    intrinsics = np.tile(np.eye(3), (frame_count, 1, 1))
    for t in range(frame_count):
        scale = 1.0 + focal_wobble * np.sin(0.5 * t)
        intrinsics[t, 0, 0], intrinsics[t, 1, 1] = focal[0] * scale, focal[1] * scale
        intrinsics[t, 0, 2], intrinsics[t, 1, 2] = cx, cy
        vertices[t] = expression(canonical, t) @ poses[t, :3, :3].T + poses[t, :3, 3]
        positions[t] = vertices[t, point_index]
    vertices.flush()
    pixels = np.einsum("tij,tpj->tpi", intrinsics, positions.astype(np.float64))
    pixels = (pixels[..., :2] / pixels[..., 2:]).astype(np.float32)

    np.save(folder / "vertex_confidence.npy", np.ones((frame_count, len(canonical)), np.float16))
    np.save(folder / "vertex_filled.npy", np.zeros((frame_count, len(canonical)), bool))
    np.savez(folder / "mesh.npz", canonical_vertices=canonical.astype(np.float32), triangles=triangles, uv=uv)
    source_indices = first_source_index + step * np.arange(frame_count, dtype=np.int64)
    np.savez(
        folder / "frames.npz",
        head_pose=poses,
        intrinsics=intrinsics,
        frame_state=np.full(frame_count, formats.FRAME_TRACKED, np.uint8),
        timestamps=source_indices / fps,
        source_indices=source_indices,
    )
    np.savez(
        folder / "points.npz",
        names=np.array(names),
        canonical=canonical[point_index].astype(np.float32),
        positions=positions,
        pixels=pixels,
        visible=np.ones((frame_count, len(names)), bool),
    )
    header = {
        "format": formats.FORMAT,
        "format_version": formats.FORMAT_VERSION,
        "capture_fingerprint": "synthetic",
        "canonical_space": "synthetic-patch",
        "mesh_mode": "template",
        "settings": {},
        "frame_count": frame_count,
        "vertex_count": len(canonical),
        "frame_size": [width, height],
        "fps": fps,
        "runtime_version": "synthetic",
    }
    (folder / "header.json").write_text(json.dumps(header, indent=1), encoding="utf-8")
    return Path(capture_dir)
