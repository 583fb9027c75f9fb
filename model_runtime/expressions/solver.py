"""ARKit-52 expression weights, head pose and eye gaze per frame from a reconstruction.

The reconstruction's vertices are brought into the head's canonical frame (rigid head motion
removed with its head pose); what is left is identity plus expression. With the observed basis
the capture's pose bias (how it bends a face at rest as the head turns, measured by
bench/expression_basis.py, linear in `pose_terms`) is taken out too. That bias is an average
face's; each face bends its own way (its directions differ, cosine 0.3-0.6), so this face's own
bend is measured too (`pose_dependence`, on yaw and pitch) and taken out of every frame: on the
*rest frames* where the user gives them (a relaxed face while the head turns, e.g. the first
seconds of a take), otherwise on the whole clip, robustly (an expression held for a few frames
is an outlier to the fit), where the head turns back and forth enough to tell the two apart
(`swings_enough`). From the whole clip, an expression that moves with the head (brows raised at
every look up) is partly taken for the bend; rest frames are exact. A per-user neutral (one
chosen frame, the median of the rest frames, or estimated from the clip, see
`ExpressionSolver.estimate_neutral`) removes the identity; the
remaining offsets are fitted, all frames at once, against the expression basis carried onto the
reconstruction's mesh (bench/expression_basis.py's offsets live on the template's 478 vertices; each mesh
vertex takes them at its closest point on the template surface; by default the basis measured as
the capture sees each shape, see bench/expression_basis.py). The fit is bounded least squares,
weights in [0, 1], with a small L1 term (a shape is used only when it pays: less crosstalk
between look-alike shapes) and a temporal term (weights change smoothly between frames), solved
with accelerated projected gradient (FISTA) on the (frames x shapes) array, in windows of
`SolverSettings.window` frames that overlap and are cross-faded (the same weights within a few
hundredths as one solve of the whole clip, with memory that does not grow with the clip). Six rigid
modes (a small shift and rotation of the whole face) are fitted beside the shapes, signed and
unpenalised: what is left of the head pose's error is theirs, not a brow's or the jaw's.

The eyeLook shapes and the gaze come from the iris centres relative to the eye corners (not from
the fit: the eyeballs are not in the surface fit). The lids' shapes (eyeBlink, eyeWide) come
from each eye's aperture, lid opening over eye width, relative to its rest (the neutral frame's,
or the median of the rest frames' or of the clip's; less its bend as the head turns, measured
like the surface's), scaled by the aperture change the basis's shape makes (the mean of the two
eyes': the lids respond alike; a widening counts only beyond the aperture's own spread, see
`lid_weights`); their shapes are taken out of the offsets before the fit, so the lids' few
millimetres do not have to compete with the brows and cheeks in it. tongueOut is never seen: it
stays 0.
Head rotation is (yaw, pitch, roll) in radians relative to a head facing the camera.

Memory: the mesh is read READ_FRAMES frames at a time and kept only as its projection on the
fit's columns (a few numbers per frame), its eye landmarks, and the frames the neutral is
estimated from (at most NEUTRAL_SAMPLE_FRAMES).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..template import load_template
from .arkit import ARKIT_NAMES, INDEX
from .surface import closest_on_surface, interpolate

BASIS_PATH = Path(__file__).resolve().parents[1] / "data" / "arkit_basis.npz"
GAZE_SHAPES = tuple(n for n in ARKIT_NAMES if n.startswith("eyeLook"))
LID_SHAPES = ("eyeBlinkLeft", "eyeWideLeft", "eyeBlinkRight", "eyeWideRight")
UNSEEN_SHAPES = ("tongueOut",)
FITTED_SHAPES = tuple(n for n in ARKIT_NAMES if n not in GAZE_SHAPES + LID_SHAPES + UNSEEN_SHAPES)
MIN_LID_RESPONSE = 0.1
EYELIDS = {"Left": (386, 374, 263, 362), "Right": (159, 145, 33, 133)}  # upper, lower lid, outer, inner corner
IRIS_VERTICES = np.arange(468, 478)
EYES = {  # iris centre, outer and inner eye corner (template landmarks); _L is the subject's left
    "left": (473, 263, 362),
    "right": (468, 33, 133),
}
EYE_POINTS = np.unique([*np.ravel(list(EYELIDS.values())), *np.ravel(list(EYES.values()))])
"""The landmarks the lids and the gaze are read from."""
_AT = {int(landmark): i for i, landmark in enumerate(EYE_POINTS)}
EYEBALL_RADIUS_M = 0.012
EYE_LOOK_FULL_RAD = np.radians(30.0)  # an eyeLook weight reaches 1 at this gaze angle
MAX_FIT_VERTICES = 2000
NEUTRAL_SAMPLE_FRAMES = 200
REST_SHARE, MIN_REST_FRAMES = 0.5, 3
"""The fit uses at most this many vertices (evenly spread by index: a subdivided template's
new vertices are midpoints of old ones, a dense mesh's run along its grid), which keeps the
cost per frame flat in mesh density without losing any region of the face."""
READ_FRAMES = 256
BEND_POSE_TERMS = 2
"""A face's own pose dependence is fitted on yaw and pitch only (the first two `pose_terms`):
a few seconds of turning cannot pin down the squared terms."""
QUARTILE_OF_NORMAL_DEVIATION = 0.3186
"""The first quartile of |x| for x normal with unit deviation (``scipy.stats.norm.ppf(0.625)``)."""
MIN_SWINGS, SWING_BAND_RAD = 3, np.radians(5.0)
"""Without rest frames a face's own bend is measured on the whole clip only when its yaw or
pitch crosses from one side of its median to the other (by more than the band) at least this
many times: an expression can coincide with one swing of the head, not with all of them, so the
robust fit tells it from the bend; a head that turns once while the face smiles cannot tell
them apart (a smile held through the second half of a single 40 degree turn: measured from that
clip, the bend took most of it, a mean error of 0.24 instead of 0.02; tests/test_expressions_solver.py)."""
POSE_TERM_FLOOR_RAD = np.radians(3.0)
"""A pose term that spreads less than this over the frames the bend is measured on is held by a
ridge, not fitted to noise."""
TUKEY_C = 4.685
TEMPLATE_FACING_CAMERA = np.diag([1.0, -1.0, -1.0])  # canonical (+Y up, +Z out) -> camera (y down, z away)


@dataclass
class SolverSettings:
    sparsity: float = 0.01  # L1 weight, relative to the mean diagonal of the normal matrix
    temporal: float = 0.05  # first-difference smoothness, same scale
    ridge: float = 1e-4
    iterations: int = 150
    neutral_frame: int | None = None  # None: estimate the neutral from the whole clip
    basis: str = "observed"  # or "geometric" (see load_basis)
    window: int = 256  # frames fitted at once (see `ExpressionSolver.fit_windows`)
    window_overlap: int = 32
    rest_frames: tuple[int, ...] | None = None  # frames at rest while the head turns (see `solve_sequence`)


@dataclass
class ExpressionCurves:
    weights: np.ndarray  # (T, 52) float32 in [0, 1], columns in ARKIT_NAMES order
    head_rotation: np.ndarray  # (T, 3) yaw, pitch, roll, radians (see `head_angles`)
    head_translation: np.ndarray  # (T, 3) metres, camera space, the canonical origin (between the eyes)
    eye_gaze: np.ndarray  # (T, 2, 2) [left, right] x [yaw, pitch], radians (see `eye_gaze`)
    neutral_frame: int  # the frame used as neutral, -1 where the neutral was estimated


@lru_cache(maxsize=2)
def load_basis(kind: str = "observed") -> np.ndarray:
    """(52, 478, 3) offsets on the template, ARKIT_NAMES order, from data/arkit_basis.npz:
    "observed" (each shape as the capture sees it) or "geometric" (how ICT's skin moves); see
    bench/expression_basis.py. Falls back to the geometric basis when the observed one was never measured."""
    with np.load(BASIS_PATH, allow_pickle=False) as data:
        if tuple(str(n) for n in data["names"]) != ARKIT_NAMES:
            raise ValueError(f"{BASIS_PATH} does not hold the ARKit names in arkit.py's order; rebuild it "
                             "(python -m model_runtime.expressions.build_basis)")
        key = "observed" if kind == "observed" and "observed" in data.files else "basis"
        basis = data[key].astype(np.float64)
    basis.setflags(write=False)
    return basis


@lru_cache(maxsize=1)
def load_pose_bias() -> np.ndarray:
    """(4, 478, 3) the capture's pose bias on the template (see `pose_terms`, measured by
    bench/expression_basis.py --observed); zeros when it was never measured."""
    with np.load(BASIS_PATH, allow_pickle=False) as data:
        bias = data["pose_bias"].astype(np.float64) if "pose_bias" in data.files else np.zeros((4, 478, 3))
    bias.setflags(write=False)
    return bias


class ExpressionSolver:
    """The fit for one mesh (its canonical vertices); reusable across clips on that mesh."""

    def __init__(self, canonical_vertices: np.ndarray, settings: SolverSettings | None = None):
        self.settings = settings or SolverSettings()
        template = load_template()
        triangle, weights, _ = closest_on_surface(canonical_vertices, template.vertices, template.triangles)
        fitted = [INDEX[n] for n in FITTED_SHAPES]
        template_basis = load_basis(self.settings.basis)
        basis = interpolate(template_basis, template.triangles, triangle, weights)  # (52, V, 3)
        on_iris = np.isin(template.triangles[triangle], IRIS_VERTICES).any(axis=1)
        candidates = np.nonzero(~on_iris)[0]
        self.fit_vertices = candidates[:: int(np.ceil(len(candidates) / MAX_FIT_VERTICES))]
        self.design = basis[fitted][:, self.fit_vertices].reshape(len(fitted), -1)  # (S, 3V')
        # The observed basis is the capture's view of each shape; the capture also bends a face
        # at rest as it turns (the pose bias), which is taken out before the fit. The geometric
        # basis is the skin's own motion: no capture, no bias.
        observed = self.settings.basis == "observed"
        self.landmark_pose_bias = load_pose_bias() if observed else np.zeros((4, 478, 3))
        pose_bias = interpolate(self.landmark_pose_bias, template.triangles, triangle, weights)
        self.pose_bias = pose_bias[:, self.fit_vertices]
        # The head pose's small errors per frame are fitted beside the shapes (signed, unpenalised),
        # so that a face slightly tilted or shifted against the neutral is not read as an expression.
        columns = np.vstack([self.design, rigid_modes(np.asarray(canonical_vertices, np.float64)[self.fit_vertices])])
        self.shape_count = len(fitted)
        lids = [INDEX[n] for n in LID_SHAPES]
        self.lid_design = basis[lids][:, self.fit_vertices].reshape(len(lids), -1)  # (4, 3V')
        # The two lids respond alike: their measured responses are averaged (half the noise).
        measured = lid_response(template.vertices, template_basis).reshape(2, 2).mean(axis=0)
        self.lid_response = np.tile(measured, 2)
        # A measured response too small to read (the capture barely widens the eye) would turn
        # noise into full weights: the skin's own (geometric) response stands in for it.
        fallback = lid_response(template.vertices, load_basis("geometric"))
        unreadable = (self.lid_response * np.sign(fallback)) < MIN_LID_RESPONSE
        self.lid_response = np.where(unreadable, fallback, self.lid_response)
        # Each column's weight is scaled by its size (the root of its normal-matrix diagonal):
        # a unit-diagonal problem converges in far fewer iterations when small shapes (a blink)
        # sit beside large ones (jawOpen), and the L1 and temporal terms weigh every shape alike
        # relative to its own size.
        self.columns = columns
        normal = columns @ columns.T
        self.size = np.sqrt(np.diag(normal))
        self.normal = normal / np.outer(self.size, self.size) + self.settings.ridge * np.eye(len(columns))
        self.is_shape = np.arange(len(columns)) < self.shape_count
        self.step = 1.0 / (np.linalg.eigvalsh(self.normal)[-1] + 4.0 * self.settings.temporal)

    def fit_projected(self, projected: np.ndarray, iterations: int | None = None, signed: bool = False) -> np.ndarray:
        """Weights of the shapes, then of the rigid modes, (T, S + 6), from the offsets already
        projected on both, (T, S + 6) = offsets @ columns.T; `signed` lets the shapes' weights
        reach -1, drops the L1 term and holds the rigid modes at 0 (see `estimate_neutral`: on
        real footage they would take up part of a held smile and let it pass for rest)."""
        sparsity = 0.0 if signed else self.settings.sparsity
        linear = (projected - sparsity * self.is_shape * self.size ** 2) / self.size
        upper = np.where(self.is_shape, self.size, 0.0 if signed else np.inf)
        lower = np.where(self.is_shape, -self.size if signed else 0.0, 0.0 if signed else -np.inf)
        temporal = self.settings.temporal * self.is_shape
        scaled = np.clip(linear @ np.linalg.inv(self.normal), lower, upper)
        previous, momentum, t = scaled, scaled, 1.0
        for _ in range(iterations or self.settings.iterations):
            gradient = momentum @ self.normal - linear + temporal * _difference_laplacian(momentum)
            scaled = np.clip(momentum - self.step * gradient, lower, upper)
            t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
            momentum = scaled + ((t - 1.0) / t_next) * (scaled - previous)
            previous, t = scaled, t_next
        return scaled / self.size

    def fit_windows(self, projected: np.ndarray) -> np.ndarray:
        """(T, S) weights of FITTED_SHAPES from the offsets projected on the columns (T, S + 6),
        fitted `window` frames at a time; consecutive windows overlap by `window_overlap` frames,
        across which the later window's weights fade in linearly."""
        window, overlap = self.settings.window, self.settings.window_overlap
        if not 0 <= overlap < window:
            raise ValueError(f"the window overlap ({overlap}) must be below the window ({window} frames)")
        weights = np.empty((len(projected), self.shape_count))
        done = 0
        for start in range(0, max(len(projected) - overlap, 1), window - overlap):
            stop = min(start + window, len(projected))
            fitted = self.fit_projected(projected[start:stop])[:, : self.shape_count]
            shared = done - start
            fade_in = ((np.arange(shared) + 1.0) / (shared + 1.0))[:, None]
            weights[start:done] = (1.0 - fade_in) * weights[start:done] + fade_in * fitted[:shared]
            weights[done:stop] = fitted[shared:]
            done = stop
        return weights

    def estimate_neutral(self, head_frame_vertices: np.ndarray) -> np.ndarray:
        """The face at rest, from the clip: the per-vertex median of the REST_SHARE of frames
        that look least expressive. Each frame is scored by a signed fit against the clip's
        median face (weights in [-1, 1], each weighed by its shape's size): an expression held
        through most of the clip (a smile kept while talking) is in the median, and the frames
        where it is released score below 0, so they, not the smile, become the rest. Long clips
        are given at NEUTRAL_SAMPLE_FRAMES evenly spaced frames (`solve_sequence`)."""
        vertices = np.asarray(head_frame_vertices, np.float64)
        median = np.median(vertices, axis=0)
        signed = self.fit_projected((vertices - median).reshape(len(vertices), -1) @ self.columns.T, signed=True)
        score = signed[:, : self.shape_count] @ self.size[: self.shape_count]
        calmest = np.argsort(score)[: max(MIN_REST_FRAMES, int(REST_SHARE * len(vertices)))]
        return np.median(vertices[calmest], axis=0)


def _difference_laplacian(weights: np.ndarray) -> np.ndarray:
    """D^T D w for the first-difference operator D along time (gradient of 0.5 |D w|^2)."""
    result = np.zeros_like(weights)
    if len(weights) > 1:
        step = np.diff(weights, axis=0)
        result[:-1] -= step
        result[1:] += step
    return result


def _rest_frames(frames, count: int) -> np.ndarray | None:
    """The rest frames as sorted unique indices, at most NEUTRAL_SAMPLE_FRAMES of them (evenly
    spread); None when none were given."""
    if frames is None:
        return None
    frames = np.unique(np.asarray(frames, int))
    if len(frames) < MIN_REST_FRAMES or frames[0] < 0 or frames[-1] >= count:
        raise ValueError(f"the rest frames must be at least {MIN_REST_FRAMES} frames of the clip (0..{count - 1})")
    return frames[_evenly_spaced(len(frames), NEUTRAL_SAMPLE_FRAMES)]


def _evenly_spaced(count: int, limit: int) -> np.ndarray:
    """Sorted indices of at most `limit` of `count` items, evenly spread, the first and last included."""
    return np.unique(np.linspace(0, count - 1, min(count, limit)).round().astype(int))


def pose_dependence(offsets: np.ndarray, terms: np.ndarray, iterations: int = 5):
    """How `offsets` (N, P) vary with pose terms (N, K) about the terms' mean, fitted robustly
    (iterated Tukey weights: a blink or a twitch in the rest frames, an expression in the clip,
    does not count; 5 iterations gave the expression bench's figures of 10 at half the cost); a
    term that barely varies is held near 0 by a ridge. Returns ``bend(terms (M, K), projection=None)
    -> (M, P)``, or ``(M, P) @ projection`` computed without the (M, P) array."""
    centre = terms.mean(axis=0)
    spread = np.maximum(terms.std(axis=0), POSE_TERM_FLOOR_RAD)
    design = np.column_stack([np.ones(len(terms)), (terms - centre) / spread])
    ridge = np.diag([0.0] + [0.05 * len(terms)] * terms.shape[1])
    weights = np.ones_like(offsets)
    products = (design[:, :, None] * design[:, None, :]).reshape(len(design), -1)  # (N, (K+1)^2)
    for _ in range(iterations):
        normal = (weights.T @ products).reshape(-1, *ridge.shape) + ridge
        right = (weights * offsets).T @ design
        coefficients = np.linalg.solve(normal, right[..., None])[..., 0]
        residual = offsets - design @ coefficients.T
        scale = 1.4826 * np.median(np.abs(residual), axis=0) + 1e-12
        weights = np.clip(1.0 - (residual / (TUKEY_C * scale)) ** 2, 0.0, None) ** 2
    slopes = coefficients[:, 1:].T / spread[:, None]  # (K, P) per unit of each term

    def bend(at: np.ndarray, projection: np.ndarray | None = None) -> np.ndarray:
        return (at - centre) @ (slopes if projection is None else slopes @ projection)

    return bend


def swings_enough(terms: np.ndarray) -> bool:
    """Whether any column of `terms` (N, K), in time order, crosses from one side of its median
    to the other at least MIN_SWINGS times, counting only excursions beyond SWING_BAND_RAD."""
    for angle in terms.T:
        middle = np.median(angle)
        side = np.sign(angle - middle) * (np.abs(angle - middle) > SWING_BAND_RAD)
        side = side[side != 0]
        if np.count_nonzero(np.diff(side)) >= MIN_SWINGS:
            return True
    return False


def rigid_modes(points: np.ndarray) -> np.ndarray:
    """(6, 3N) offsets of points (N, 3) under a small shift along x, y, z and a small rotation
    about x, y, z through their centroid (metres per metre and per radian)."""
    centred = points - points.mean(axis=0)
    modes = [np.broadcast_to(axis, points.shape) for axis in np.eye(3)]
    modes += [np.cross(axis, centred) for axis in np.eye(3)]
    return np.stack([np.asarray(mode).reshape(-1) for mode in modes])


def pose_terms(angles: np.ndarray) -> np.ndarray:
    """(T, 4) yaw, pitch, yaw^2 and pitch^2 (radians) of head angles (T, 3): the terms in which
    the capture's pose bias (data/arkit_basis.npz "pose_bias") is linear."""
    yaw, pitch = angles[:, 0], angles[:, 1]
    return np.stack([yaw, pitch, yaw ** 2, pitch ** 2], axis=1)


def to_head_frame(vertices: np.ndarray, head_pose: np.ndarray) -> np.ndarray:
    """Camera-space vertices (T, V, 3) into the canonical head frame: R^T (v - t) per frame."""
    rotation, translation = head_pose[:, :3, :3], head_pose[:, :3, 3]
    return np.matmul(np.asarray(vertices, np.float64) - translation[:, None, :], rotation)


def head_angles(head_pose: np.ndarray) -> np.ndarray:
    """(T, 3) yaw, pitch, roll (radians) of the head relative to facing the camera: the head's
    rotation, in camera axes, is R_y(yaw) R_x(pitch) R_z(roll) (camera y down, so positive yaw
    turns the face toward image left, the subject's right, positive pitch tilts the chin down,
    positive roll tilts the head clockwise in the image)."""
    relative = head_pose[:, :3, :3] @ TEMPLATE_FACING_CAMERA
    pitch = np.arcsin(np.clip(-relative[:, 1, 2], -1.0, 1.0))
    yaw = np.arctan2(relative[:, 0, 2], relative[:, 2, 2])
    roll = np.arctan2(relative[:, 1, 0], relative[:, 1, 1])
    return np.stack([yaw, pitch, roll], axis=1)


def eye_gaze(eye_points: np.ndarray, neutral_eye_points: np.ndarray) -> np.ndarray:
    """(T, 2, 2) [left, right] x [yaw, pitch] in radians from the EYE_POINTS landmarks in the
    head frame (T, len(EYE_POINTS), 3): the iris centre's offset from the middle of its eye
    corners, less that offset in the neutral, over the eyeball's radius. Yaw is positive toward
    the subject's left (+X), pitch positive looking up (+Y)."""
    gaze = np.zeros((len(eye_points), 2, 2))
    for e, (iris, outer, inner) in enumerate(EYES.values()):
        iris, outer, inner = _AT[iris], _AT[outer], _AT[inner]
        offset = eye_points[:, iris] - (eye_points[:, outer] + eye_points[:, inner]) / 2
        rest = neutral_eye_points[iris] - (neutral_eye_points[outer] + neutral_eye_points[inner]) / 2
        sine = np.clip((offset - rest)[:, :2] / EYEBALL_RADIUS_M, -1.0, 1.0)
        gaze[:, e] = np.arcsin(sine)
    return gaze


def eye_apertures(eye_points: np.ndarray) -> np.ndarray:
    """(..., 2) lid opening over eye width, [left, right], of the EYE_POINTS landmarks (..., len(EYE_POINTS), 3)."""
    columns = []
    for upper, lower, outer, inner in EYELIDS.values():
        opening = np.linalg.norm(eye_points[..., _AT[upper], :] - eye_points[..., _AT[lower], :], axis=-1)
        width = np.linalg.norm(eye_points[..., _AT[outer], :] - eye_points[..., _AT[inner], :], axis=-1)
        columns.append(opening / width)
    return np.stack(columns, axis=-1)


def lid_response(template_vertices: np.ndarray, template_basis: np.ndarray) -> np.ndarray:
    """(4,) relative change of its eye's aperture that each LID_SHAPES shape makes at weight 1
    (negative for a blink), read off the basis on the template."""
    rest = eye_apertures(template_vertices[EYE_POINTS])
    response = np.empty(len(LID_SHAPES))
    for k, name in enumerate(LID_SHAPES):
        eye = 0 if name.endswith("Left") else 1
        shaped = template_vertices[EYE_POINTS] + template_basis[INDEX[name]][EYE_POINTS]
        response[k] = eye_apertures(shaped)[eye] / rest[eye] - 1.0
    return response


def lid_weights(change: np.ndarray, response: np.ndarray) -> np.ndarray:
    """(T, 4) LID_SHAPES weights from the eyes' relative aperture changes from rest (T, 2): a
    narrower eye is a blink, a wider one eyeWide, each scaled by its shape's response. A widening
    counts only beyond the aperture's own spread over the clip (a standard deviation estimated from
    the quarter of the frames closest to the median, so that lids busy in most frames do not
    inflate it): the capture widens an eye by about a tenth at full eyeWide but its apertures
    wander 5-10 % as the head turns, which read as eyeWide near 1 for seconds at a time (rendered
    clips, bench/expressions/report.md)."""
    spread = np.quantile(np.abs(change - np.median(change, axis=0)), 0.25, axis=0) / QUARTILE_OF_NORMAL_DEVIATION
    change = np.where(change > 0, np.maximum(change - spread, 0.0), change)
    weights = np.empty((len(change), len(LID_SHAPES)))
    for k, name in enumerate(LID_SHAPES):
        weights[:, k] = change[:, 0 if name.endswith("Left") else 1] / response[k]
    return np.clip(weights, 0.0, 1.0)


def eye_look_weights(gaze: np.ndarray) -> dict[str, np.ndarray]:
    """The eight eyeLook curves from the gaze: In/Out are toward the nose / away from it."""
    curves = {}
    for e, side in enumerate(("Left", "Right")):
        yaw, pitch = gaze[:, e, 0], gaze[:, e, 1]
        outward = yaw if side == "Left" else -yaw
        for name, angle in (("Out", outward), ("In", -outward), ("Up", pitch), ("Down", -pitch)):
            curves[f"eyeLook{name}{side}"] = np.clip(angle / EYE_LOOK_FULL_RAD, 0.0, 1.0)
    return curves


def solve_sequence(vertices, head_pose: np.ndarray, canonical_vertices: np.ndarray,
                   landmarks: np.ndarray | None = None, settings: SolverSettings | None = None,
                   solver: ExpressionSolver | None = None) -> ExpressionCurves:
    """Every curve of a clip. `vertices` (T, V, 3) camera space on the mesh whose canonical
    positions are `canonical_vertices`, anything indexed as ``vertices[start:stop, columns]``;
    `head_pose` (T, 4, 4) canonical -> camera; `landmarks` (T, 478, 3) camera space for the
    lids and the gaze, default the mesh's first 478 vertices (a template mesh keeps the
    template's landmarks first)."""
    solver = solver or ExpressionSolver(canonical_vertices, settings)
    head_pose = np.asarray(head_pose, np.float64)
    count = len(head_pose)
    neutral_frame = solver.settings.neutral_frame
    if neutral_frame is not None and not 0 <= neutral_frame < count:
        raise ValueError(f"neutral frame {neutral_frame} is outside the clip (0..{count - 1})")
    at_rest = _rest_frames(solver.settings.rest_frames, count)
    angles = head_angles(head_pose)
    terms = pose_terms(angles)
    sample = _evenly_spaced(count, NEUTRAL_SAMPLE_FRAMES) if at_rest is None else at_rest
    kept_frames = sample if neutral_frame is None else np.union1d(sample, [neutral_frame])
    projected = np.empty((count, len(solver.columns)))
    eye_points = np.empty((count, len(EYE_POINTS), 3))
    kept_vertices = np.empty((len(kept_frames), len(solver.fit_vertices), 3))
    eye_bias = solver.landmark_pose_bias[:, EYE_POINTS]
    for start in range(0, count, READ_FRAMES):
        stop = min(start + READ_FRAMES, count)
        pose, term = head_pose[start:stop], terms[start:stop]
        source = vertices if landmarks is None else landmarks
        eye_points[start:stop] = (to_head_frame(source[start:stop, EYE_POINTS], pose)
                                  - np.einsum("tk,kvd->tvd", term, eye_bias))
        fit = to_head_frame(vertices[start:stop, solver.fit_vertices], pose)
        fit -= np.einsum("tk,kvd->tvd", term, solver.pose_bias)
        projected[start:stop] = fit.reshape(len(fit), -1) @ solver.columns.T
        chosen = (kept_frames >= start) & (kept_frames < stop)
        kept_vertices[chosen] = fit[kept_frames[chosen] - start]
    apertures = eye_apertures(eye_points)
    bend_terms = terms[sample, :BEND_POSE_TERMS]
    if at_rest is not None or swings_enough(bend_terms):
        # How the capture bends this face as its head turns (the measured pose bias is an average
        # face's), measured on the rest frames or on the whole clip, is taken out of every frame.
        at = np.searchsorted(kept_frames, sample)
        bend = pose_dependence(kept_vertices[at].reshape(len(at), -1), bend_terms)
        projected -= bend(terms[:, :BEND_POSE_TERMS], solver.columns.T)
        kept_vertices -= bend(terms[kept_frames, :BEND_POSE_TERMS]).reshape(kept_vertices.shape)
        apertures = apertures - pose_dependence(apertures[sample], bend_terms)(terms[:, :BEND_POSE_TERMS])
    rest_source = [neutral_frame] if neutral_frame is not None else (at_rest if at_rest is not None else slice(None))
    rest_apertures = np.median(apertures[rest_source], axis=0)
    lids = lid_weights(apertures / rest_apertures - 1.0, solver.lid_response)
    # The lids' shapes are taken out of the offsets before the fit (see the module docstring).
    projected -= lids @ (solver.lid_design @ solver.columns.T)
    kept_vertices -= (lids[kept_frames] @ solver.lid_design).reshape(kept_vertices.shape)
    if neutral_frame is not None:
        neutral = kept_vertices[np.searchsorted(kept_frames, neutral_frame)]
    elif at_rest is not None:
        neutral = np.median(kept_vertices, axis=0)
    else:
        neutral = solver.estimate_neutral(kept_vertices)
    fitted = solver.fit_windows(projected - neutral.reshape(-1) @ solver.columns.T)
    weights = np.zeros((count, len(ARKIT_NAMES)), np.float32)
    weights[:, [INDEX[n] for n in FITTED_SHAPES]] = fitted
    weights[:, [INDEX[n] for n in LID_SHAPES]] = lids
    neutral_eyes = np.median(eye_points[rest_source], axis=0)
    gaze = eye_gaze(eye_points, neutral_eyes)
    for name, curve in eye_look_weights(gaze).items():
        weights[:, INDEX[name]] = curve
    return ExpressionCurves(weights=weights, head_rotation=angles, head_translation=head_pose[:, :3, 3].copy(),
                            eye_gaze=gaze, neutral_frame=-1 if neutral_frame is None else int(neutral_frame))
