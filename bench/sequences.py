"""Seeded synthetic sequences: what each benchmark clip shows, frame by frame (numpy only).

A `SequenceSpec` holds everything that decides a clip: the ICT-FaceKit identity, expression
weights per frame, head rotation and translation per frame, camera focal length, lighting, skin
tone, background and an optional occluder. `make_sequence(style, seed, ...)` draws one from a
seed, so a clip is reproducible from (style, seed, frame_count, image_size). The renderer
(render_gt.py, run by Blender's Python) and the scorer (accuracy.py) both use this module; the
renderer stores the spec it used beside the frames, so scoring never depends on re-drawing it.

Spaces:

* ICT model space: centimetres in the npz, metres here; +X toward the subject's left, +Y up,
  +Z out of the face. The ground-truth canonical coordinate of a surface point is its position
  on the *generic neutral* head (`FaceModel.neutral`) in this space, whatever the identity and
  expression: a fixed label per surface point.
* Camera space: OpenCV (x right, y down, z forward, metres). A head with zero rotation looks
  straight at the camera. `SequenceSpec.head_pose(t)` maps ICT model space (metres) to camera
  space; the posed vertices are that transform applied to the identity- and expression-shaped
  head.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from model_runtime.errors import InputError
from .paths import SHARED

SPEC_VERSION = 1
ICT_MODEL_PATH = SHARED / "assets" / "ict_face_model" / "ict_face_model.npz"
STYLES = ("talk", "turn", "fast", "occlusion")
# The benchmark suite: (style, seed) pairs, one clip each.
SUITE = (("talk", 11), ("turn", 12), ("fast", 13), ("occlusion", 14))

# Surface codes of the ground-truth `surface` map (ICT regions 0-3 first).
SURFACE_BACKGROUND = -1
SURFACE_FACE, SURFACE_HEAD, SURFACE_EYEBALL_L, SURFACE_EYEBALL_R = 0, 1, 2, 3
SURFACE_INTERIOR = 4  # the inside of the head seen through the mouth or the neck opening
SURFACE_OCCLUDER = 5
FACE_SURFACES = (SURFACE_FACE, SURFACE_EYEBALL_L, SURFACE_EYEBALL_R)

# Polygon materials of the rendered head.
MATERIAL_SKIN, MATERIAL_SCLERA, MATERIAL_IRIS = 0, 1, 2
IRIS_ANGLE_DEG = 28.0

# Rotation pivot of the head in ICT model space (metres): behind and below the face, near the
# top of the spine, so a yaw swings the face the way a neck does.
HEAD_PIVOT = np.array([0.0, -0.06, -0.01])
# The pivot lies this far below the middle of the face (ICT face region: y from -16.5 to 12.4 cm),
# so a pivot this far below the optical axis (camera y points down) centres the face.
PIVOT_BELOW_FACE_CENTRE_M = 0.04
# ICT model axes (+Y up, +Z out of the face) to camera axes (y down, z forward) for a head that
# looks at the camera: a half turn about x.
MODEL_TO_CAMERA_AXES = np.diag([1.0, -1.0, -1.0])
# Chin to crown of the neutral head is about 0.29 m; `make_sequence` frames that much head.
HEAD_HEIGHT_M = 0.29

# Skin tones from light to dark (sRGB, 0-1), interpolated by a seeded draw.
SKIN_TONES_SRGB = np.array([
    [0.96, 0.80, 0.69],
    [0.89, 0.69, 0.56],
    [0.78, 0.57, 0.44],
    [0.60, 0.42, 0.30],
    [0.40, 0.26, 0.18],
])

# The 12 triangles of a box whose 8 corners are ordered as in `Occluder.corners`.
BOX_TRIANGLES = np.array([
    [0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
    [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5],
], np.int32)


@dataclass(frozen=True)
class FaceModel:
    """The ICT-FaceKit head, in metres, triangulated (quads split along their 0-2 diagonal)."""

    neutral: np.ndarray  # (V, 3) float64
    identity_basis: np.ndarray  # (I, V, 3) float32 offsets
    expression_basis: np.ndarray  # (E, V, 3) float32 offsets
    expression_names: tuple[str, ...]
    triangles: np.ndarray  # (F, 3) int32, counter-clockwise seen from outside
    triangle_region: np.ndarray  # (F,) int8, ICT region (0 face, 1 head/neck, 2/3 eyeballs)
    triangle_material: np.ndarray  # (F,) int8, MATERIAL_*
    landmarks68: np.ndarray  # (68,) int32 vertex indices (iBUG order)

    @property
    def vertex_count(self) -> int:
        return int(self.neutral.shape[0])

    def shape(self, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
        """(V, 3) vertices in ICT model space (metres) for identity and expression weights."""
        offsets = np.tensordot(identity.astype(np.float32), self.identity_basis, axes=1)
        offsets += np.tensordot(expression.astype(np.float32), self.expression_basis, axes=1)
        return self.neutral + offsets


@lru_cache(maxsize=2)
def load_face_model(path: Path | None = None) -> FaceModel:
    """Read the packed ICT head (../shared/assets/ict_face_model/ict_face_model.npz by default)."""
    path = Path(path or ICT_MODEL_PATH)
    if not path.is_file():
        raise InputError(
            f"the ICT face model is missing: {path}",
            "The accuracy benchmark renders it; put the shared assets folder beside the checkout (../shared).",
        )
    with np.load(path, allow_pickle=False) as data:
        faces = data["faces"]
        region = data["region"]
        triangles = _triangulate(faces)
        return FaceModel(
            neutral=data["neutral"].astype(np.float64) / 100.0,
            identity_basis=data["identity_basis"].astype(np.float32) / 100.0,
            expression_basis=data["expression_basis"].astype(np.float32) / 100.0,
            expression_names=tuple(str(name) for name in data["expression_names"]),
            triangles=triangles,
            triangle_region=region[triangles].max(axis=1).astype(np.int8),
            triangle_material=_triangle_materials(triangles, region, data["neutral"]),
            landmarks68=data["landmarks68"].astype(np.int32),
        )


def _triangulate(faces: np.ndarray) -> np.ndarray:
    """Quads (a, b, c, d) -> (a, b, c), (a, c, d); rows padded with -1 are triangles already."""
    first = faces[:, [0, 1, 2]]
    quads = faces[faces[:, 3] >= 0]
    return np.concatenate([first, quads[:, [0, 2, 3]]]).astype(np.int32)


def _triangle_materials(triangles: np.ndarray, region: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """Skin, or for eyeball triangles sclera / iris: the iris is the cap within IRIS_ANGLE_DEG of
    straight ahead (+Z) seen from the eyeball's centre (ICT paints it with a texture we do not use)."""
    material = np.full(len(triangles), MATERIAL_SKIN, np.int8)
    centroids = neutral[triangles].mean(axis=1)
    for eye in (SURFACE_EYEBALL_L, SURFACE_EYEBALL_R):
        in_eye = region[triangles[:, 0]] == eye
        direction = centroids[in_eye] - neutral[region == eye].mean(axis=0)
        cosine = direction[:, 2] / np.linalg.norm(direction, axis=1)
        material[in_eye] = np.where(cosine > np.cos(np.radians(IRIS_ANGLE_DEG)), MATERIAL_IRIS, MATERIAL_SCLERA)
    return material


@dataclass
class Occluder:
    """A box (hand-sized) that passes between the camera and the face."""

    half_size: np.ndarray  # (3,) metres, camera axes
    centres: np.ndarray  # (T, 3) camera space, metres
    colour: np.ndarray  # (3,) linear RGB

    def corners(self, frame: int) -> np.ndarray:
        """(8, 3) camera-space corners; corner i has sign bits (x: i & 1, y: i & 2, z: i & 4)."""
        signs = np.array([[1 if i & bit else -1 for bit in (1, 2, 4)] for i in range(8)], np.float64)
        return self.centres[frame] + signs * self.half_size


@dataclass
class Lighting:
    key_direction: np.ndarray  # (3,) unit vector the key light travels along, camera space
    key_strength: float  # sun irradiance (Blender units, W/m^2)
    key_colour: np.ndarray  # (3,) linear RGB
    ambient_strength: float  # uniform white environment light


@dataclass
class SequenceSpec:
    style: str
    seed: int
    frame_count: int
    fps: float
    image_size: int  # square frames, pixels
    focal_px: float
    identity: np.ndarray  # (I,) identity weights
    expressions: np.ndarray  # (T, E) expression weights in [0, 1]
    head_angles: np.ndarray  # (T, 3) yaw, pitch, roll in degrees (see `rotation_matrix`)
    head_positions: np.ndarray  # (T, 3) camera-space position of HEAD_PIVOT, metres
    skin_tone: np.ndarray  # (3,) linear RGB
    background: np.ndarray  # (3,) linear RGB
    lighting: Lighting
    occluder: Occluder | None

    @property
    def name(self) -> str:
        return f"{self.style}-{self.seed}"

    def intrinsics(self) -> np.ndarray:
        """Pinhole matrix; the principal point is the image centre (pixel centres at integers)."""
        centre = self.image_size / 2.0 - 0.5
        return np.array([[self.focal_px, 0, centre], [0, self.focal_px, centre], [0, 0, 1.0]])

    def head_pose(self, frame: int) -> np.ndarray:
        """(4, 4) rigid transform, ICT model space (metres) -> camera space."""
        rotation = rotation_matrix(*self.head_angles[frame]) @ MODEL_TO_CAMERA_AXES
        pose = np.eye(4)
        pose[:3, :3] = rotation
        pose[:3, 3] = self.head_positions[frame] - rotation @ HEAD_PIVOT
        return pose

    def posed_vertices(self, model: FaceModel, frame: int) -> np.ndarray:
        """(V, 3) camera-space vertices of the head on `frame`."""
        pose = self.head_pose(frame)
        return model.shape(self.identity, self.expressions[frame]) @ pose[:3, :3].T + pose[:3, 3]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for np.savez (read back with `from_arrays`)."""
        arrays = {
            "meta": np.array(json.dumps({"style": self.style, "seed": self.seed, "fps": self.fps,
                                         "image_size": self.image_size, "focal_px": self.focal_px,
                                         "key_strength": self.lighting.key_strength,
                                         "ambient_strength": self.lighting.ambient_strength,
                                         "spec_version": SPEC_VERSION})),
            "identity": self.identity, "expressions": self.expressions, "head_angles": self.head_angles,
            "head_positions": self.head_positions, "skin_tone": self.skin_tone, "background": self.background,
            "key_direction": self.lighting.key_direction, "key_colour": self.lighting.key_colour,
        }
        if self.occluder is not None:
            arrays.update(occluder_half_size=self.occluder.half_size, occluder_centres=self.occluder.centres,
                          occluder_colour=self.occluder.colour)
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> "SequenceSpec":
        meta = json.loads(str(arrays["meta"]))
        occluder = None
        if "occluder_centres" in arrays:
            occluder = Occluder(np.asarray(arrays["occluder_half_size"]), np.asarray(arrays["occluder_centres"]),
                                np.asarray(arrays["occluder_colour"]))
        return cls(
            style=meta["style"], seed=int(meta["seed"]), frame_count=len(arrays["expressions"]), fps=meta["fps"],
            image_size=int(meta["image_size"]), focal_px=float(meta["focal_px"]),
            identity=np.asarray(arrays["identity"]), expressions=np.asarray(arrays["expressions"]),
            head_angles=np.asarray(arrays["head_angles"]), head_positions=np.asarray(arrays["head_positions"]),
            skin_tone=np.asarray(arrays["skin_tone"]), background=np.asarray(arrays["background"]),
            lighting=Lighting(np.asarray(arrays["key_direction"]), float(meta["key_strength"]),
                              np.asarray(arrays["key_colour"]), float(meta["ambient_strength"])),
            occluder=occluder,
        )

    def fingerprint(self) -> str:
        """Changes whenever anything that shows in the frames changes."""
        digest = hashlib.sha256()
        for key, value in sorted(self.to_arrays().items()):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(value).tobytes() if value.dtype != object else str(value).encode())
        return digest.hexdigest()[:16]


def rotation_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Camera-space rotation: roll about z, then pitch about x, then yaw about y.

    Signs, for a head facing the camera: positive yaw turns the face toward image left (the
    subject's right), positive pitch tilts the chin down, positive roll tilts the head
    clockwise in the image."""
    yaw, pitch, roll = np.radians([yaw_deg, pitch_deg, roll_deg])
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    about_z = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return about_y @ about_x @ about_z


def make_sequence(style: str, seed: int, frame_count: int = 60, image_size: int = 384, fps: float = 25.0,
                  model: FaceModel | None = None) -> SequenceSpec:
    """Draw a reproducible sequence of `style` (one of STYLES) from `seed`.

    talk: speech-like jaw, smiles, brows and blinks with gentle head motion.
    turn: yaw sweeping to about +-45 degrees with pitch and asymmetric expressions.
    fast: head shakes and jerks of several pixels per frame, blinks.
    occlusion: talk-like motion while a box passes across the face.
    """
    if style not in STYLES:
        raise InputError(f"unknown benchmark sequence style {style!r}", f"Use one of: {', '.join(STYLES)}.")
    model = model or load_face_model()
    rng = np.random.default_rng([SPEC_VERSION, STYLES.index(style), seed])
    times = np.arange(frame_count) / fps
    focal = image_size * rng.uniform(1.0, 2.2)
    distance = focal * HEAD_HEIGHT_M / (image_size * rng.uniform(0.55, 0.7))
    head_angles, head_positions = _head_motion(style, rng, times, distance)
    return SequenceSpec(
        style=style,
        seed=seed,
        frame_count=frame_count,
        fps=fps,
        image_size=image_size,
        focal_px=float(focal),
        identity=np.clip(rng.normal(0.0, 1.0, model.identity_basis.shape[0]), -2.0, 2.0),
        expressions=_expressions(style, rng, times, model.expression_names),
        head_angles=head_angles,
        head_positions=head_positions,
        skin_tone=srgb_to_linear(_interpolate_rows(SKIN_TONES_SRGB, rng.uniform(0, 1))),
        background=srgb_to_linear(rng.uniform(0.05, 0.85, 3)),
        lighting=_lighting(rng),
        occluder=_occluder(rng, times, distance, focal, image_size) if style == "occlusion" else None,
    )


def suite_specs(frame_count: int = 60, image_size: int = 384) -> list[SequenceSpec]:
    """The benchmark suite (SUITE) at the given length and size."""
    return [make_sequence(style, seed, frame_count, image_size) for style, seed in SUITE]


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    srgb = np.asarray(srgb, np.float64)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _interpolate_rows(rows: np.ndarray, position: float) -> np.ndarray:
    scaled = position * (len(rows) - 1)
    low = min(int(scaled), len(rows) - 2)
    return rows[low] + (scaled - low) * (rows[low + 1] - rows[low])


def smooth_noise(rng: np.random.Generator, times: np.ndarray, frequency_hz: float, components: int = 3) -> np.ndarray:
    """A smooth random curve in [-1, 1] (sum of sinusoids near `frequency_hz`), 0 at time 0."""
    curve = np.zeros_like(times)
    for _ in range(components):
        frequency = frequency_hz * rng.uniform(0.6, 1.4)
        phase = rng.uniform(0, 2 * np.pi)
        curve += rng.uniform(0.5, 1.0) * (np.sin(2 * np.pi * frequency * times + phase) - np.sin(phase))
    peak = np.abs(curve).max()
    return curve / peak if peak > 0 else curve


def bump(times: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Raised cosine: 1 at `centre`, 0 beyond `width`/2 either side."""
    phase = np.clip((times - centre) / width, -0.5, 0.5)
    return 0.5 + 0.5 * np.cos(2 * np.pi * phase)


def _head_motion(style: str, rng: np.random.Generator, times: np.ndarray, distance: float):
    duration = max(float(times[-1]), 1e-6)
    if style == "turn":
        yaw = rng.uniform(38, 45) * np.sin(2 * np.pi * times / duration) * rng.choice([-1, 1])
        pitch = 12 * smooth_noise(rng, times, 0.6)
        roll = 6 * smooth_noise(rng, times, 0.5)
        sway = 0.02
    elif style == "fast":
        yaw = 22 * smooth_noise(rng, times, 2.2)
        pitch = 12 * smooth_noise(rng, times, 1.8)
        roll = 8 * smooth_noise(rng, times, 1.5)
        sway = 0.03
    else:
        yaw = 15 * smooth_noise(rng, times, 0.4)
        pitch = 8 * smooth_noise(rng, times, 0.5)
        roll = 5 * smooth_noise(rng, times, 0.4)
        sway = 0.015
    frequency = 2.0 if style == "fast" else 0.4
    offsets = np.stack([sway * smooth_noise(rng, times, frequency) for _ in range(3)], axis=1)
    start = np.array([rng.uniform(-0.01, 0.01), PIVOT_BELOW_FACE_CENTRE_M + rng.uniform(-0.01, 0.01), distance])
    return np.stack([yaw, pitch, roll], axis=1), start + offsets


def _expressions(style: str, rng: np.random.Generator, times: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """(T, E) weights built from blinks, speech-like jaw motion and bumps of smiles, brows and more."""
    weights = np.zeros((len(times), len(names)))
    column = {name: i for i, name in enumerate(names)}
    duration = float(times[-1]) if len(times) > 1 else 1.0
    asymmetric = style == "turn"

    def add(name: str, curve: np.ndarray) -> None:
        weights[:, column[name]] += curve

    blink_time = rng.uniform(0.15, 0.6)
    while blink_time < duration:
        shape = bump(times, blink_time, rng.uniform(0.15, 0.25))
        sides = ("_L", "_R") if not asymmetric or rng.uniform() < 0.5 else (rng.choice(["_L", "_R"]),)
        for side in sides:
            add("eyeBlink" + side, shape)
        blink_time += rng.uniform(0.6, 1.5)
    if style in ("talk", "occlusion", "fast"):
        add("jawOpen", 0.45 * np.clip(smooth_noise(rng, times, 3.0, components=4), 0, None))
        add("mouthClose", 0.1 * np.clip(smooth_noise(rng, times, 2.0), 0, None))
    bumps = ["mouthSmile", "browInnerUp", "browOuterUp", "browDown", "eyeSquint", "mouthFrown"]
    if asymmetric:
        bumps += ["mouthLeft", "mouthRight", "cheekPuff", "mouthPucker", "noseSneer"]
    for base in rng.choice(bumps, size=min(len(bumps), 4 if asymmetric else 3), replace=False):
        shape = rng.uniform(0.4, 0.9) * bump(times, rng.uniform(0.2, 0.9) * duration, rng.uniform(0.4, 1.0) * duration)
        if base + "_L" in column:
            left = rng.uniform(0.0, 1.0) if asymmetric else 1.0
            add(base + "_L", shape * left)
            add(base + "_R", shape * (1.0 - left if asymmetric else 1.0))
        else:
            add(base, shape)
    return np.clip(weights, 0.0, 1.0)


def _lighting(rng: np.random.Generator) -> Lighting:
    azimuth, elevation = np.radians(rng.uniform(-60, 60)), np.radians(rng.uniform(10, 50))
    # From above-front toward the face: +y is down in camera space, +z away from the camera.
    toward_scene = np.array([-np.sin(azimuth) * np.cos(elevation), np.sin(elevation),
                             np.cos(azimuth) * np.cos(elevation)])
    return Lighting(
        key_direction=toward_scene / np.linalg.norm(toward_scene),
        key_strength=float(rng.uniform(2.5, 4.5)),
        key_colour=np.array([1.0, rng.uniform(0.9, 1.0), rng.uniform(0.8, 1.0)]),
        ambient_strength=float(rng.uniform(0.25, 0.6)),
    )


def _occluder(rng: np.random.Generator, times: np.ndarray, distance: float, focal: float, image_size: int) -> Occluder:
    """A hand-sized box crossing the frame in front of the face during the middle half of the clip."""
    depth = distance - rng.uniform(0.12, 0.2)
    half_size = np.array([0.045, 0.09, 0.015])
    half_width_m = (image_size / 2 + 20) * depth / focal + half_size[0]  # fully outside at both ends
    duration = max(float(times[-1]), 1e-6)
    progress = np.clip((times / duration - 0.25) / 0.5, 0.0, 1.0)
    direction = rng.choice([-1.0, 1.0])
    xs = direction * half_width_m * (2 * progress - 1)
    ys = np.full_like(times, rng.uniform(-0.03, 0.03))
    centres = np.stack([xs, ys, np.full_like(times, depth)], axis=1)
    colour = srgb_to_linear(np.array(rng.choice([[0.85, 0.65, 0.5], [0.3, 0.35, 0.45], [0.7, 0.7, 0.65]])))
    return Occluder(half_size=half_size, centres=centres, colour=colour)
