"""Captures with known motion, for tests and benchmarks: exact maps, exact ground truth.

A face-like surface (a dome with a nose, `synthetic_template`, or any template) is deformed
(a jaw that opens and closes), moved rigidly (head turns) and rasterised into depth and
canonical maps the way a mesh-based backend does: per pixel, the ray's intersection with the
nearest front-facing triangle (perspective-correct barycentrics). Any canonical point on the mesh
therefore has a known camera position in every frame (`SyntheticClip.true_positions`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..capture_folder import FORMAT, FORMAT_VERSION, FRAMES_DIR, MANIFEST_NAME, frames_record, write_frame, write_json_atomic
from ..contract import FrameMaps, crop_window

SYNTHETIC_SPACE_ID = "synthetic-dome-v1"
CANONICAL_TO_CAMERA = np.diag([1.0, -1.0, -1.0])
"""Canonical +Y up / +Z out of the face -> camera +y down / +z away: a face looking at the camera."""


@dataclass(frozen=True)
class SyntheticTemplate:
    """Same attributes as `model_runtime.template.FaceTemplate` (those reconstruction uses)."""

    vertices: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray
    landmarks: dict
    space_id: str
    rigid: np.ndarray


def dome_height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A face-sized dome (metres) with a nose bump, +Z out of the face."""
    dome = 0.045 * np.sqrt(np.clip(1 - (x / 0.1) ** 2 - ((y + 0.015) / 0.12) ** 2, 0, None))
    nose = 0.018 * np.exp(-(x**2 + (y + 0.01) ** 2) / (2 * 0.011**2))
    return dome + nose - 0.03


def synthetic_template(spacing: float = 0.008) -> SyntheticTemplate:
    """A grid mesh over an ellipse on `dome_height`; landmarks named like the real template's."""
    xs = np.arange(-0.072, 0.0721, spacing)
    ys = np.arange(-0.096, 0.0601, spacing)
    grid_x, grid_y = np.meshgrid(xs, ys)  # [row = y, col = x]
    inside = (grid_x / 0.075) ** 2 + ((grid_y + 0.018) / 0.08) ** 2 <= 1.0
    index = np.full(inside.shape, -1)
    index[inside] = np.arange(int(inside.sum()))
    a, right, up, up_right = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    triangles = np.concatenate([np.stack([a, right, up], -1).reshape(-1, 3), np.stack([right, up_right, up], -1).reshape(-1, 3)])
    triangles = triangles[(triangles >= 0).all(axis=1)].astype(np.int32)
    x, y = grid_x[inside], grid_y[inside]
    vertices = np.stack([x, y, dome_height(x, y)], axis=1)
    uv = np.stack([(x - xs[0]) / (xs[-1] - xs[0]), (y - ys[0]) / (ys[-1] - ys[0])], axis=1).astype(np.float32)
    spots = {
        "nose_tip": (0.0, -0.01), "chin": (0.0, -0.088), "forehead_center": (0.0, 0.04),
        "eye_outer_corner_L": (0.045, 0.0), "eye_outer_corner_R": (-0.045, 0.0),
        "mouth_corner_L": (0.025, -0.058), "mouth_corner_R": (-0.025, -0.058),
        "upper_lip_outer": (0.0, -0.045), "lower_lip_outer": (0.0, -0.07),
        "cheekbone_L": (0.055, -0.02), "cheekbone_R": (-0.055, -0.02),
    }
    landmarks = {name: int(np.argmin(np.hypot(x - sx, y - sy))) for name, (sx, sy) in spots.items()}
    rigid = np.flatnonzero((y > -0.03) & (np.abs(x) < 0.06) & (np.arange(len(x)) % 3 == 0)).astype(np.int32)
    return SyntheticTemplate(vertices, triangles, uv, landmarks, SYNTHETIC_SPACE_ID, rigid)


@dataclass
class SyntheticClip:
    """A clip of `template` under known motion. Angles in degrees, lengths in metres."""

    template: object = field(default_factory=synthetic_template)
    frame_count: int = 30
    size: tuple[int, int] = (320, 256)
    focal: float = 520.0
    fps: float = 25.0
    distance: float = 0.5
    yaw: float = 20.0
    pitch: float = 8.0
    shift: float = 0.02
    jaw_drop: float = 0.008
    period: float = 30.0
    depth_noise: float = 0.0
    seed: int = 0
    no_face: tuple[int, ...] = ()
    occluded: tuple[int, ...] = ()
    """Frames in which a 'hand' hides the mouth region (canonical y < -0.045, |x| < 0.035)."""

    @property
    def intrinsics(self) -> np.ndarray:
        width, height = self.size
        return np.array([[self.focal, 0, (width - 1) / 2], [0, self.focal, (height - 1) / 2], [0, 0, 1.0]])

    def pose(self, frame: int) -> np.ndarray:
        """Canonical -> camera at `frame`."""
        phase = 2 * np.pi * frame / self.period
        turn = Rotation.from_euler("yx", [self.yaw * np.sin(phase), self.pitch * np.sin(0.5 * phase)], degrees=True)
        pose = np.eye(4)
        pose[:3, :3] = CANONICAL_TO_CAMERA @ turn.as_matrix()
        pose[:3, 3] = [self.shift * np.sin(0.7 * phase), 0.5 * self.shift * np.cos(phase), self.distance + self.shift * np.sin(phase)]
        return pose

    def jaw(self, frame: int) -> np.ndarray:
        """Non-rigid offsets (V, 3) of the template vertices in the head frame: the lower face drops."""
        vertices = np.asarray(self.template.vertices)
        amount = self.jaw_drop * 0.5 * (1 - np.cos(2 * np.pi * frame / (0.6 * self.period)))
        weight = np.clip((-0.035 - vertices[:, 1]) / 0.04, 0, 1) ** 2
        return amount * weight[:, None] * np.array([0.0, -1.0, 0.25])

    def camera_vertices(self, frame: int) -> np.ndarray:
        pose = self.pose(frame)
        return (np.asarray(self.template.vertices) + self.jaw(frame)) @ pose[:3, :3].T + pose[:3, 3]

    def true_positions(self, canonical: np.ndarray, frame: int) -> np.ndarray:
        """Camera positions of canonical points lying on the template mesh (which must be a height
        field over canonical x, y, as `synthetic_template` is)."""
        triangle, weights = _locate(np.asarray(self.template.vertices), np.asarray(self.template.triangles), canonical)
        corners = self.camera_vertices(frame)[np.asarray(self.template.triangles)[triangle]]
        return np.einsum("nk,nkc->nc", weights, corners)

    def render(self, frame: int) -> FrameMaps:
        if frame in self.no_face:
            return FrameMaps.empty(self.intrinsics, self.size)
        canonical = np.asarray(self.template.vertices, np.float64)
        depth, canonical_map, mask = rasterise(self.camera_vertices(frame), canonical, np.asarray(self.template.triangles), self.intrinsics, self.size)
        if frame in self.occluded:
            mask &= ~((canonical_map[..., 1] < -0.045) & (np.abs(canonical_map[..., 0]) < 0.035))
        if self.depth_noise:
            depth = depth + np.random.default_rng((self.seed, frame)).normal(0, self.depth_noise, depth.shape)
        x0, y0, x1, y1 = crop_window(mask)
        window = np.s_[y0:y1, x0:x1]
        mask = mask[window]
        confidence = mask.astype(np.float32)
        return FrameMaps(
            depth=np.where(mask, depth[window], 0).astype(np.float32),
            canonical=np.where(mask[..., None], canonical_map[window], 0).astype(np.float32),
            depth_confidence=confidence,
            canonical_confidence=confidence,
            mask=mask,
            intrinsics=self.intrinsics,
            frame_size=self.size,
            window=(x0, y0, x1, y1),
        )


def write_capture(directory: Path, clip: SyntheticClip) -> Path:
    """A capture folder (manifest + frames) of `clip`."""
    directory = Path(directory)
    (directory / FRAMES_DIR).mkdir(parents=True, exist_ok=True)
    width, height = clip.size
    count = clip.frame_count
    fingerprint = hashlib.sha256(repr(clip).encode()).hexdigest()[:16]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "runtime_version": "synthetic",
        "source": {"path": f"synthetic:{fingerprint}", "kind": "synthetic", "fingerprint": fingerprint, "width": width,
                   "height": height, "frame_count": count, "fps": clip.fps, "rotation": 0},
        "frames": frames_record(list(range(1, count + 1)), list(range(count)), [i / clip.fps for i in range(count)]),
        "backend": {"name": "synthetic", "version": "1", "canonical_space": clip.template.space_id},
        "intrinsics": clip.intrinsics.tolist(),
        "focal": None,
        "settings": {},
        "settings_hash": "synthetic",
    }
    write_json_atomic(directory / MANIFEST_NAME, manifest)
    for frame in range(count):
        write_frame(directory, frame, clip.render(frame))
    return directory


def rasterise(points: np.ndarray, canonical: np.ndarray, triangles: np.ndarray, intrinsics: np.ndarray, size: tuple[int, int]):
    """Depth (H, W), canonical (H, W, 3) and mask (H, W) of a triangle mesh with camera-space
    vertices `points`, seen through `intrinsics`; back faces are culled."""
    width, height = size
    projected = points @ intrinsics.T
    pixels = projected[:, :2] / projected[:, 2:]
    corners = pixels[triangles]  # (F, 3, 2)
    edge1, edge2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    area = edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0]
    # Counter-clockwise from outside is clockwise on screen (y points down): negative area.
    facing = area < -1e-9
    triangles, corners, area = triangles[facing], corners[facing], area[facing]
    low = np.ceil(corners.min(axis=1)).astype(int)
    high = np.floor(corners.max(axis=1)).astype(int)
    span = int(max((high - low).max(initial=0) + 1, 1))
    offsets = np.stack(np.meshgrid(np.arange(span), np.arange(span), indexing="xy"), axis=-1).reshape(-1, 2)
    candidate = low[:, None, :] + offsets[None]  # (F, S, 2)
    inside = (candidate <= high[:, None, :]).all(-1) & (candidate >= 0).all(-1)
    inside &= (candidate[..., 0] < width) & (candidate[..., 1] < height)
    face, slot = np.nonzero(inside)
    pixel = candidate[face, slot].astype(np.float64)
    c = corners[face]
    bary = np.stack(
        [_edge(c[:, 1], c[:, 2], pixel), _edge(c[:, 2], c[:, 0], pixel), _edge(c[:, 0], c[:, 1], pixel)], axis=1
    ) / area[face][:, None]
    keep = (bary >= -1e-9).all(axis=1)
    face, pixel, bary = face[keep], pixel[keep].astype(int), bary[keep]
    inverse_depth = bary / points[triangles[face], 2]
    depth = 1.0 / inverse_depth.sum(axis=1)
    weights = inverse_depth * depth[:, None]
    flat = pixel[:, 1] * width + pixel[:, 0]
    order = np.lexsort((depth, flat))
    first = order[np.r_[True, flat[order][1:] != flat[order][:-1]]]
    depth_map = np.zeros(height * width)
    canonical_map = np.zeros((height * width, 3))
    mask = np.zeros(height * width, bool)
    depth_map[flat[first]] = depth[first]
    canonical_map[flat[first]] = np.einsum("nk,nkc->nc", weights[first], canonical[triangles[face[first]]])
    mask[flat[first]] = True
    return depth_map.reshape(height, width), canonical_map.reshape(height, width, 3), mask.reshape(height, width)


def _edge(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    return (b[:, 0] - a[:, 0]) * (p[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (p[:, 0] - a[:, 0])


def _locate(vertices: np.ndarray, triangles: np.ndarray, points: np.ndarray):
    """For points on a height-field mesh: the triangle under each (in x, y) and its barycentrics."""
    corners = vertices[triangles][:, :, :2]  # (F, 3, 2)
    found = np.full(len(points), -1)
    weights = np.zeros((len(points), 3))
    for start in range(0, len(points), 256):
        p = points[start : start + 256, None, :2]
        a, b, c = corners[None, :, 0], corners[None, :, 1], corners[None, :, 2]
        area = (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
        l0 = ((b[..., 0] - p[..., 0]) * (c[..., 1] - p[..., 1]) - (b[..., 1] - p[..., 1]) * (c[..., 0] - p[..., 0])) / area
        l1 = ((c[..., 0] - p[..., 0]) * (a[..., 1] - p[..., 1]) - (c[..., 1] - p[..., 1]) * (a[..., 0] - p[..., 0])) / area
        l2 = 1 - l0 - l1
        bary = np.stack([l0, l1, l2], axis=-1)
        score = bary.min(axis=-1)  # >= 0 inside; the best triangle for points on an edge
        best = score.argmax(axis=1)
        found[start : start + 256] = best
        weights[start : start + 256] = bary[np.arange(len(best)), best]
    return found, weights
