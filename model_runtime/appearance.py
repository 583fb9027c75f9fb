"""The appearance stage: landmarks that follow the skin's texture, not only MediaPipe's guess.

MediaPipe's landmarks carry a bias that changes with the head's pose and with the crop it
tracks; smoothing cannot remove it, only evidence from the pixels can. Per frame, on a grayscale
face crop at a fixed resolution (so the cost does not follow the frame size):

1. **Flow from the previous frame.** The previous frame is first warped along the landmark
   mesh by (mostly the affine part of) MediaPipe's motion, so that the flow has only small,
   local motion left; every landmark of frame t-1 is then moved by dense optical flow (OpenCV's
   DIS, on images whose shading is flattened by a local contrast normalisation) to frame t, and
   kept only when the backward flow brings it back within ``FORWARD_BACKWARD_PX`` (a point
   whose neighbourhood changed, e.g. under an occluder, fails). Chained flow alone drifts, so:
2. **Alignment against the reference frame** (the first frame tracked). The reference image is
   warped into the current frame's geometry, piecewise-affinely along the landmark mesh
   (``raster.py``: each pixel of the current crop gets the reference pixel that the mesh maps
   onto it; the z-buffer keeps the surface in front), so the patch around landmark i shows the
   reference's skin as it would look at the landmark's predicted place, pose and expression
   included. Flow from that warped reference to the current crop (at the crop's full
   resolution, ``ALIGNMENT_FLOW_SETTINGS``) then measures, at each landmark, how far the
   prediction is from where the skin really is; a forward-backward check
   keeps the trustworthy corrections. This anchors every point to the reference frame, so
   tracks do not drift however long the clip. A small correction may be the match's own noise
   and is taken a share ``REFERENCE_GAIN`` per frame (steady tracks); of one larger than
   ``REFERENCE_NOISE_PX`` whose match is confirmed (the windows of the reference and of its
   match correlate above ``MATCH_MIN_CORRELATION``) all the excess is taken at once, so a
   point that comes back from under an occluder off its skin is back on it the next frame.
3. **Hidden points.** A point where the frame does not look like the warped reference (its
   window correlates poorly with the match's although the reference is textured there: an
   occluder, a closed lid), or that neither check accepts, is flagged hidden. MediaPipe's
   landmarks bend toward an occluder, so a hidden point moves as the visible points around it
   do (``_spread``: their affine motion, plus their own beyond it where they are near); when
   the skin shows again step 2 puts it back on the right spot.
4. **New tracks.** After a frame without a face (or a resume there) a track starts from
   MediaPipe's landmarks aligned at once against the reference; the points the alignment does
   not confirm take the reference's landmarks moved as the confirmed ones moved, and are
   flagged hidden (zero confidence: reconstruction fills them from the frames that saw them).
   A running track whose points the reference mostly fails to match (fewer than
   ``LOST_SHARE``) is compared with such a new track, which replaces it where it matches
   clearly more (a restart beside an occluder that went wrong).

Every other point is pulled toward MediaPipe's landmark by ``MEDIAPIPE_PULL`` times one minus
its trust in the reference alignment, so that a point the reference cannot confirm (a 45
degree turn changes the skin's shading) still cannot wander off.

**Points not fixed to the skin** (``loose_points``) are left to MediaPipe. A lid margin slides
over the eyeball and the iris over the eye's white: what surrounds such a point changes as it
moves (eye -> lid skin), so flow cannot follow it, and a closed lid was flagged covered and
pulled only slowly toward MediaPipe. Tracked like skin, the lids lagged and were damped (after a
blink the eye opening recovered 3-4 frames after MediaPipe's; full closures reached about half
MediaPipe's depth). The set comes from the template's topology: the rims of the mesh's eye
openings (the holes that hold the ``LOOSE_RIMS`` landmarks, lid margins and eye corners) and its
islands (every connected part but the largest: the two iris fans, centres included). Each frame
such a point takes MediaPipe's landmark moved by the correction the skin around it received
(``_spread`` of refined minus MediaPipe's over the other points), so it keeps MediaPipe's motion
relative to the skin (a blink, a gaze) but no other bias than the refined skin's around it. It
is never flagged covered by its own look, only hidden where most skin around it is (a hand over
an eye). On expression clip a the refined eye opening now closes about as deep as MediaPipe's,
on the same frames (its four lid closures: -27 % from open on average, MediaPipe -30 %, was
-14 %), and the expression bench finds more of the rendered blinks (bench/expressions/report.md);
appearance bench (png; talk, fast, turn) EPE after 0.89 / 1.83 / 1.90 -> 0.89 / 1.82 / 1.85 px.
The inner lip contour stays tracked (``LOOSE_RIMS`` says why).

The stage's state at frame t is the previous frame's image and refined landmarks and the
reference frame's image and landmarks; the capture folder stores the landmarks (float32, which
is why every result here is rounded to float32) and the images are decoded again, so a capture
resumed after a kill continues exactly as an uninterrupted one (``resume``).

Pure numpy and OpenCV; no bpy.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from model_runtime.raster import rasterize
from model_runtime.template import load_template

FLOW_PRESET = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
"""DIS flow preset: MEDIUM halves FAST's error on fast motion (1.1 vs 1.25 px a step on a 45 degree turn)."""
ALIGNMENT_FLOW_SETTINGS = {"FinestScale": 0}
"""Changes to ``FLOW_PRESET`` for the reference alignment's flow: MEDIUM stops at half the crop's
resolution, which smooths each point's correction into its neighbours'; at full resolution the
tracks are closer to the skin on every clip and input of the appearance bench (EPE -3 to -12 %,
bench/appearance.md) for about 3.5 times the flow's cost (capture about 1.4x slower). The
chained flow gains nothing from it (same bench), so it stays at MEDIUM."""
CROP_SIZE = 320
"""Side of the square face crop (pixels) the flow runs on, whatever the frame size."""
CROP_MARGIN = 0.15
"""The crop extends the landmarks' bounding box by this fraction of its longer side on every side."""
FORWARD_BACKWARD_PX = 1.2
"""Largest forward-backward disagreement (crop pixels) of a trusted frame-to-frame flow vector."""
REFERENCE_FORWARD_BACKWARD_PX = 1.5
"""Forward-backward disagreement (crop pixels) at which the reference alignment gets no weight;
the weight falls linearly from 1 at no disagreement."""
DENOISE_SIGMA = 0.8
"""Gaussian blur (crop pixels) against sensor and compression noise before the flow."""
MAX_CORRECTION_PX = 24.0
"""Largest correction (crop pixels) taken from the reference alignment: a tenth of the crop, twice
MediaPipe's usual error on a visible face, so that a point that comes back from under an
occluder (where it was carried by its neighbours' motion) is still within reach (at 12 the
forward-backward check accepted such corrections, 12-14 crop pixels, but the cap refused them)."""
COVER_WINDOW = 11
"""Side (crop pixels) of the window compared between the warped reference and the frame."""
COVER_MIN_CONTRAST = 4.0
"""Grey-level standard deviation the reference needs in that window to tell covered skin."""
COVER_MAX_CORRELATION = 0.3
"""Below this correlation between the warped reference and the frame a point counts as covered."""
REFERENCE_GAIN = 0.5
"""Share of the reference alignment's correction taken per frame (times its trust): halving it
spreads a correction over a few frames, jitter on the turn clip 1.38 -> 1.26 px/frame^2 at equal error."""
MATCH_MIN_CORRELATION = 0.8
"""Correlation of the windows (``COVER_WINDOW``) of the reference and of its match in the frame
above which a large correction is taken at once: the same skin under another pose still
correlates this well, an occluder's edge dragging the flow does not."""
LOST_SHARE = 0.25
"""A track whose reference alignment matches (``MATCH_MIN_CORRELATION``) fewer than this share of
its points is compared with a new track from MediaPipe's landmarks: on a visible face about
half match (lips, eyes and the outline have too little texture or change too much)."""
REFERENCE_NOISE_PX = 1.0
"""Size (crop pixels) of a reference correction that may be the match's own noise: of a larger
one all but this much is taken at once. The forward-backward check accepts matches up to
``REFERENCE_FORWARD_BACKWARD_PX``, so a match's own error is up to about this size."""
MEDIAPIPE_PULL = 0.05
"""Share of the way toward MediaPipe's landmark a point moves each frame, times (1 - its trust in
the reference alignment): flow keeps the tracks steady, MediaPipe keeps them from drifting where
the reference cannot see (on the turn and talk clips 0.05-0.1 did best of 0.05-0.3)."""
GUIDE_LOCAL = 0.25
"""Share of MediaPipe's non-affine motion the previous frame is warped by before the flow. All
of it passes MediaPipe's frame-to-frame noise into the tracks (jitter on the turn clip 1.91
px/frame^2), none of it leaves expressions and turns to the flow alone (EPE 3.8 instead of 3.1)."""
NEIGHBOUR_SIGMA = 20.0
"""Width (crop pixels, about a twelfth of the face) over which a hidden point follows its visible
neighbours' motion beyond their common affine motion: the size of an eye or half the lips, over
which a face's motion is close to affine."""
NEIGHBOUR_FLOOR = 0.5
"""Weight (in neighbours at zero distance) of the affine field alone in ``_spread``: a point with
no visible neighbour within a few ``NEIGHBOUR_SIGMA`` follows the affine motion only."""
LOOSE_RIMS = ("eye_upper_lid_L", "eye_upper_lid_R")
"""Template landmarks whose hole's rim is left to MediaPipe (``loose_points``): the two eye
openings. The third hole, the inner lip contour, stays tracked: left to MediaPipe too it made
the mouth curves worse (expression bench, clips a+b: mouthFrownLeft r 0.77 -> 0.71, jawOpen on
the held-out clip 0.13 -> 0.03) and the landmarks' jitter of error higher (talk 0.35 -> 0.42
px/frame^2) at equal EPE: the lips' own texture follows the lips where they part."""
SHADING_SIGMA = 3.5
"""Scale (crop pixels) of the local contrast normalisation before the flow: removes the shading
that changes as the head turns under a fixed light (EPE on the 45 degree turn clip 4.2 -> 3.2 px)."""


def loose_points(triangles: np.ndarray) -> np.ndarray:
    """Indices of the mesh's vertices that are not fixed to the skin (see the module docstring):
    on the rim of a hole (a boundary loop other than the longest, the outline) that holds one of
    the ``LOOSE_RIMS`` landmarks, or on an island (a connected part other than the largest). A
    mesh without holes or islands has none."""
    triangles = np.asarray(triangles, np.int64)
    count = int(triangles.max()) + 1 if triangles.size else 0
    edges = np.sort(triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, uses = np.unique(edges, axis=0, return_counts=True)
    named = [load_template().landmarks[name] for name in LOOSE_RIMS]
    holes = sorted(_vertex_groups(unique[uses == 1], count), key=len)[:-1]
    islands = sorted(_vertex_groups(unique, count), key=len)[:-1]
    loose = [rim for rim in holes if np.isin(named, rim).any()] + islands
    return np.unique(np.concatenate(loose)) if loose else np.zeros(0, np.int64)


def _vertex_groups(edges: np.ndarray, count: int) -> list[np.ndarray]:
    """The vertices of each connected part of the graph of ``edges`` (isolated vertices left out)."""
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    _, label = connected_components(graph, directed=False)
    used = np.zeros(count, bool)
    used[edges.ravel()] = True
    return [np.flatnonzero(used & (label == part)) for part in np.unique(label[used])]


@dataclass
class TrackedLandmarks:
    """One frame's result: refined pixels (L, 2) float32 and per-point flags (L,) bool."""

    pixels: np.ndarray
    hidden: np.ndarray


@dataclass
class _View:
    gray: np.ndarray  # (H, W) uint8, the whole frame
    points: np.ndarray  # (L, 2) float32 pixels


class AppearanceTracker:
    """Fed frames in order (``update``); see the module docstring.

    triangles: (F, 3) the landmark mesh, used to warp the reference frame.
    """

    def __init__(self, triangles: np.ndarray, crop_size: int = CROP_SIZE):
        self.triangles = np.asarray(triangles, np.int64)
        self.loose = loose_points(self.triangles)
        self.crop_size = crop_size
        self._chain_flow = cv2.DISOpticalFlow_create(int(FLOW_PRESET))
        self._alignment_flow = cv2.DISOpticalFlow_create(int(FLOW_PRESET))
        for name, value in ALIGNMENT_FLOW_SETTINGS.items():
            getattr(self._alignment_flow, "set" + name)(value)
        self._previous: _View | None = None
        self._reference: _View | None = None

    def resume(self, previous: tuple[np.ndarray, np.ndarray] | None,
               reference: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Continue after frames computed by another run: (gray image, stored landmarks) of the
        frame before the next one (None when it had no face) and of the reference frame (the
        first with a face; None when there was none yet)."""
        self._previous = None if previous is None else _View(previous[0], _float32(previous[1]))
        self._reference = None if reference is None else _View(reference[0], _float32(reference[1]))

    def update(self, gray: np.ndarray, detected: np.ndarray | None, depth: np.ndarray | None = None
               ) -> TrackedLandmarks | None:
        """The refined landmarks of the next frame.

        gray:     (H, W) uint8 frame.
        detected: (L, 2) MediaPipe's landmark pixels on this frame, or None (no face found).
        depth:    (L,) positive per-landmark depths (any unit) for the warp's z-buffer; None
                  draws every triangle at equal depth.
        Returns None when there is neither a face found nor a track to continue.
        """
        if self._previous is None:
            if detected is None:
                return None
            if self._reference is None:
                result = TrackedLandmarks(_float32(detected), np.zeros(len(detected), bool))
            else:
                result = self._restart(gray, detected, depth)[0]
        else:
            result = self._track(gray, detected, depth)
        self._previous = _View(gray, result.pixels)
        if self._reference is None:
            self._reference = self._previous
        return result

    def lose_track(self) -> None:
        """Forget the previous frame (no face on it): the next face found starts a new track."""
        self._previous = None

    def reject_last(self) -> None:
        """The last frame turned out to have no usable face (the caller stores it as faceless):
        forget it, as previous frame and, if it was the first, as reference."""
        if self._reference is self._previous:
            self._reference = None
        self._previous = None

    def _track(self, gray: np.ndarray, detected: np.ndarray | None, depth: np.ndarray | None) -> TrackedLandmarks:
        previous = self._previous
        crop = _Crop.around(previous.points, self.crop_size)
        now = crop.cut(gray)
        guess = crop.to_crop(detected) if detected is not None else None
        start = crop.to_crop(previous.points)
        if guess is not None:
            # The previous frame drawn where MediaPipe's motion carries its landmarks (its
            # affine part, and GUIDE_LOCAL of the rest): the flow is left with small, local
            # motion only, whatever the head does (fast turns).
            affine = _fit_affine(start, guess)
            rigid = start @ affine[:, :2].T + affine[:, 2]
            carried = rigid + GUIDE_LOCAL * (guess - rigid)
            before = self._warp_reference(previous, crop, carried, depth)
        else:
            carried, before = start, crop.cut(previous.gray)
        flat_now = _flatten_shading(now)
        moved, flow_error, _ = _follow(self._chain_flow, _flatten_shading(before), flat_now, carried)
        flow_ok = flow_error <= FORWARD_BACKWARD_PX
        moved[~flow_ok] = carried[~flow_ok]
        if guess is not None:
            moved = self._place_loose(moved, guess)
        aligned, trust, textured, correlation = self._align(crop, now, flat_now, moved, depth)
        skin = self._skin(len(moved))
        confirmed = skin & textured & (correlation >= MATCH_MIN_CORRELATION)
        matched = int((confirmed & (trust > 0)).sum())
        if guess is not None and matched < LOST_SHARE * len(moved):
            # Few points match the reference: the track may be lost (a restart beside an
            # occluder went wrong) or the face largely covered. A new track from MediaPipe's
            # landmarks is taken only when clearly more of its points match (a restart
            # breaks the chained flow's continuity).
            restarted, restarted_matched = self._restart(gray, detected, depth)
            if restarted_matched > 2 * matched:
                return restarted
        refined = moved + trust[:, None] * _correction_step(aligned - moved, confirmed)
        hidden = skin & ((~flow_ok & (trust == 0)) | (textured & (correlation < COVER_MAX_CORRELATION)))
        if guess is not None:
            pull = MEDIAPIPE_PULL * (1.0 - trust[:, None])
            refined += pull * (guess - refined)
        seen = skin & ~hidden
        if hidden.any() and seen.any():
            # Under an occluder MediaPipe's mesh bends toward it; the points there move as
            # the visible skin around them does.
            refined[hidden] = start[hidden] + _spread(refined[seen] - start[seen], start[seen], start[hidden])
        elif guess is not None:
            refined[hidden] = guess[hidden]
        if guess is not None:
            refined = self._place_loose(refined, guess)
            hidden[self.loose] = _neighbour_share(hidden[skin], guess[skin], guess[self.loose]) > 0.5
        return TrackedLandmarks(_float32(crop.to_frame(refined)), hidden)

    def _restart(self, gray: np.ndarray, detected: np.ndarray, depth: np.ndarray | None
                 ) -> tuple[TrackedLandmarks, int]:
        """A new track (after a frame without a face, or a resume there): MediaPipe's landmarks
        aligned at once against the reference frame. Points the alignment cannot confirm (under
        an occluder MediaPipe's mesh bends toward it) take the reference frame's landmarks moved
        as the confirmed ones moved since then (their affine motion, plus that of their
        neighbours beyond it). Also returns how many points the reference matches well."""
        crop = _Crop.around(detected, self.crop_size)
        now = crop.cut(gray)
        guess = crop.to_crop(detected)
        aligned, trust, textured, correlation = self._align(crop, now, _flatten_shading(now), guess, depth)
        skin = self._skin(len(guess))
        hidden = skin & textured & (correlation < COVER_MAX_CORRELATION)
        confirmed = skin & (trust > 0) & ~hidden
        matched = int((confirmed & textured & (correlation >= MATCH_MIN_CORRELATION)).sum())
        if confirmed.sum() < 3:
            return TrackedLandmarks(_float32(detected), hidden), matched
        reference = crop.to_crop(self._reference.points)
        carried = reference + _spread(aligned[confirmed] - reference[confirmed], reference[confirmed], reference,
                                      trust[confirmed])
        own = np.where(confirmed, trust, 0.0)[:, None]
        pixels = self._place_loose(own * aligned + (1.0 - own) * carried, guess)
        # Only what the reference confirms counts as seen: the rest are guesses.
        hidden = ~confirmed
        hidden[self.loose] = _neighbour_share(hidden[skin], guess[skin], guess[self.loose]) > 0.5
        return TrackedLandmarks(_float32(crop.to_frame(pixels)), hidden), matched

    def _skin(self, count: int) -> np.ndarray:
        """(count,) bool: the points fixed to the skin (all but ``loose``)."""
        skin = np.ones(count, bool)
        skin[self.loose] = False
        return skin

    def _place_loose(self, points: np.ndarray, guess: np.ndarray) -> np.ndarray:
        """``points`` with the loose ones at MediaPipe's ``guess`` moved by the correction the
        skin around them received (``points`` minus ``guess`` on the skin, spread)."""
        if not self.loose.size:
            return points
        skin = self._skin(len(points))
        placed = points.copy()
        placed[self.loose] = guess[self.loose] + _spread(points[skin] - guess[skin], guess[skin], guess[self.loose])
        return placed

    def _align(self, crop: "_Crop", now: np.ndarray, flat_now: np.ndarray, points: np.ndarray,
               depth: np.ndarray | None):
        """The reference alignment at ``points`` (crop pixels): where the flow from the warped
        reference puts each point, the trust in it ([0, 1], from its forward-backward check and
        ``MAX_CORRECTION_PX``), and whether the reference is textured there and how well its
        window correlates with the match's (``_match_correlation``)."""
        warped = self._warp_reference(self._reference, crop, points, depth)
        aligned, alignment_error, forward = _follow(self._alignment_flow, _flatten_shading(warped), flat_now, points)
        trust = np.clip(1.0 - alignment_error / REFERENCE_FORWARD_BACKWARD_PX, 0.0, 1.0)
        trust[np.linalg.norm(aligned - points, axis=1) > MAX_CORRECTION_PX] = 0.0
        textured, correlation = _match_correlation(warped, _pull_back(now, forward), points)
        return aligned, trust, textured, correlation

    def _warp_reference(self, reference: _View, crop: "_Crop", points: np.ndarray, depth: np.ndarray | None
                        ) -> np.ndarray:
        """The reference frame drawn in the current crop's geometry: along the mesh with its
        vertices at ``points``, and by the affine map that best fits the landmarks around it
        (so that points on the face's outline have their surroundings too)."""
        size = crop.size
        depth = np.ones(len(points)) if depth is None else np.asarray(depth, np.float64)
        raster = rasterize(points, depth, self.triangles, (0, 0, size, size), attributes=reference.points)
        affine = _fit_affine(points, reference.points).astype(np.float32)
        outside_mesh = _pixel_grid(size, size) @ affine[:, :2].T + affine[:, 2]
        source = np.where(raster.mask[..., None], raster.attributes, outside_mesh)
        return cv2.remap(reference.gray, source[..., 0], source[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)


def _follow(flow, source: np.ndarray, target: np.ndarray, points: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``points`` of ``source`` carried into ``target`` (both shading-flattened) by dense flow,
    how far the backward flow misses them (crop pixels; infinite when carried out of the
    crop) and the forward flow."""
    forward = flow.calc(source, target, None)
    backward = flow.calc(target, source, None)
    moved = points + _sample(forward, points)
    returned = moved + _sample(backward, moved)
    size = source.shape[0]
    inside = ((moved >= 0) & (moved <= size - 1)).all(axis=1)
    return moved, np.where(inside, np.linalg.norm(returned - points, axis=1), np.inf), forward


def _fit_affine(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares affine map of ``source`` (N, 2) points onto ``target``."""
    homogeneous = np.column_stack([source, np.ones(len(source))])
    return np.linalg.lstsq(homogeneous, np.asarray(target, np.float64), rcond=None)[0].T


def _correction_step(correction: np.ndarray, confirmed: np.ndarray) -> np.ndarray:
    """The part of the reference alignment's corrections (N, 2) taken on this frame: a share
    ``REFERENCE_GAIN`` of a small one (a match's noise, spread over a few frames, stays out of
    the tracks); of a ``confirmed`` match (N,) all beyond ``REFERENCE_NOISE_PX`` (a real error,
    as after an occluder, is gone at once)."""
    length = np.linalg.norm(correction, axis=1, keepdims=True)
    step = np.where(confirmed[:, None], np.maximum(REFERENCE_GAIN * length, length - REFERENCE_NOISE_PX),
                    REFERENCE_GAIN * length)
    return correction * step / np.maximum(length, 1e-9)


def _spread(values: np.ndarray, sources: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None
            ) -> np.ndarray:
    """Displacements ``values`` (N, 2) known at ``sources`` (N, 2), spread to ``targets`` (M, 2):
    their least-squares affine field plus the residuals of the nearby sources (Gaussian weights
    of width ``NEIGHBOUR_SIGMA``), so a target far from every source gets the affine part only."""
    weights = np.ones(len(sources)) if weights is None else np.asarray(weights, np.float64)
    homogeneous = np.column_stack([sources, np.ones(len(sources))])
    if len(sources) >= 3:
        root = np.sqrt(weights)[:, None]
        affine = np.linalg.lstsq(homogeneous * root, values * root, rcond=None)[0]
    else:
        affine = np.vstack([np.zeros((2, 2)), np.average(values, axis=0, weights=weights + 1e-9)])
    residual = values - homogeneous @ affine
    near = _nearness(sources, targets) * weights
    local = near @ residual / (near.sum(axis=1, keepdims=True) + NEIGHBOUR_FLOOR)
    return np.column_stack([targets, np.ones(len(targets))]) @ affine + local


def _neighbour_share(flags: np.ndarray, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The share of ``flags`` (N,) set among the ``sources`` (N, 2) near each of ``targets`` (M, 2)
    (Gaussian weights of width ``NEIGHBOUR_SIGMA``)."""
    near = _nearness(sources, targets)
    return near @ flags.astype(np.float64) / np.maximum(near.sum(axis=1), 1e-12)


def _nearness(sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(M, N) Gaussian weights of width ``NEIGHBOUR_SIGMA`` between ``targets`` (M, 2) and ``sources`` (N, 2)."""
    distance2 = ((targets[:, None, :] - sources[None, :, :]) ** 2).sum(axis=-1)
    return np.exp(-distance2 / (2 * NEIGHBOUR_SIGMA ** 2))


def _flatten_shading(gray: np.ndarray) -> np.ndarray:
    """Local contrast normalisation: the texture stays, smooth shading (which changes as the
    head turns under fixed light) goes."""
    image = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), DENOISE_SIGMA)
    detail = image - cv2.GaussianBlur(image, (0, 0), SHADING_SIGMA)
    spread = np.sqrt(cv2.GaussianBlur(detail * detail, (0, 0), SHADING_SIGMA) + 4.0)
    return np.clip(128 + 40 * detail / spread, 0, 255).astype(np.uint8)


def _pull_back(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` drawn where ``flow`` (from another image to it) comes from: each pixel shows
    what the flow says it became, so a point is compared with its match, not its guess."""
    source = _pixel_grid(*flow.shape[:2]) + flow
    return cv2.remap(image, source, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@functools.lru_cache(maxsize=4)
def _pixel_grid(height: int, width: int) -> np.ndarray:
    """(height, width, 2) float32: each pixel's own (x, y); read-only, shared between calls."""
    grid = np.mgrid[0:height, 0:width][::-1].transpose(1, 2, 0).astype(np.float32)
    grid.flags.writeable = False
    return grid


def _match_correlation(expected: np.ndarray, seen: np.ndarray, points: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Whether the (warped) reference has texture around each point, and how the windows of the
    reference and of the current crop (pulled back onto it) correlate there: poorly where
    something else shows (an occluder, a closed lid), well where the match is the same skin."""
    window = (COVER_WINDOW, COVER_WINDOW)
    a, b = expected.astype(np.float32), seen.astype(np.float32)
    mean_a, mean_b = cv2.blur(a, window), cv2.blur(b, window)
    var_a = cv2.blur(a * a, window) - mean_a ** 2
    var_b = cv2.blur(b * b, window) - mean_b ** 2
    covariance = cv2.blur(a * b, window) - mean_a * mean_b
    # A flat window (an occluder without texture) matches nothing: the variances are floored at
    # one grey level squared, so float rounding in them cannot make a correlation.
    correlation = covariance / np.sqrt(np.maximum(var_a, 1.0) * np.maximum(var_b, 1.0))
    return _sample(var_a, points) > COVER_MIN_CONTRAST ** 2, _sample(correlation, points)


class _Crop:
    """A square region of the frame scaled to ``size`` x ``size`` pixels."""

    def __init__(self, origin: np.ndarray, scale: float, size: int):
        self.origin, self.scale, self.size = origin, scale, size
        self.matrix = np.array([[scale, 0, -scale * origin[0]], [0, scale, -scale * origin[1]]])

    @classmethod
    def around(cls, points: np.ndarray, size: int) -> "_Crop":
        low, high = points.min(axis=0).astype(np.float64), points.max(axis=0).astype(np.float64)
        side = float((high - low).max()) * (1 + 2 * CROP_MARGIN)
        side = max(side, 8.0)
        origin = (low + high) / 2 - side / 2
        return cls(origin, size / side, size)

    def cut(self, gray: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(gray, self.matrix, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    def to_crop(self, pixels: np.ndarray) -> np.ndarray:
        return (np.asarray(pixels, np.float64) - self.origin) * self.scale

    def to_frame(self, pixels: np.ndarray) -> np.ndarray:
        return pixels / self.scale + self.origin


def _sample(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear samples of an (h, w[, C]) map at (N, 2) pixel positions."""
    xy = np.asarray(points, np.float32)
    values = cv2.remap(field, xy[:, :1], xy[:, 1:], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return values.reshape(len(xy), -1) if field.ndim == 3 else values.reshape(len(xy))


def _float32(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float32).copy()


def to_gray(image_rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
