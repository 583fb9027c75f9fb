"""Derive the ARKit expression basis on the project's template from the ICT-FaceKit model.

    .venv-runtime/bin/python -m bench.expression_basis [--ict PATH]

Reads ``../shared/assets/ict_face_model/ict_face_model.npz`` (MIT, USC ICT) and writes
``model_runtime/data/arkit_basis.npz``: for each of the 52 ARKit shapes, the offset of each of
the template's 478 vertices (metres, canonical space). Only these derived offsets are kept, never
ICT's vertices or files; ICT's licence text goes beside them (``ICT-FaceKit-LICENSE.txt``).

Registration of ICT's neutral head onto the template:

1. A similarity transform (Umeyama) from 56 of ICT's 68 iBUG landmarks to the MediaPipe
   landmarks at the same places (``IBUG_TO_MEDIAPIPE``; the ear-level jaw points differ in
   definition and are left out).
2. A thin-plate-spline warp of the aligned ICT face that puts those landmarks exactly on the
   template's (smoothed a little, so the warp stays gentle between landmarks).
3. Each template vertex takes the closest point of the warped ICT face surface; near the mouth
   a vertex above the inner-lip line only takes a point above it and one below only below, so
   the upper lip never borrows the lower lip's motion (ICT's lips touch, the template's part).
4. An expression's offsets at that point (barycentric over ICT's triangle), rotated and scaled
   by step 1, are the template vertex's offsets. ICT's split ``browInnerUp`` and ``cheekPuff``
   halves are summed; ``tongueOut`` (not in ICT) stays zero.

That is the ``geometric`` basis: how the skin moves. The capture does not see all of it: MediaPipe's
landmarks follow an eyelid or a brow only part of the way (on ICT renders a full blink moves the
upper-lid landmark 1.3 of 7.5 mm). With ``--observed`` the script also measures, on renders of
ICT's generic head (render_gt.py through Blender's Python, cached under bench/cache/basis/)
captured with the default backend (appearance stage on) and reconstructed without smoothing:

* the ``observed`` basis, how the capture sees each shape: the head faces the camera, at rest
  in frame 0 and making each of its expressions at OBSERVED_WEIGHT in the frames after; a
  shape's offsets are its frame's landmarks less the rest frame's, in the head frame, over the
  weight, the median over five such renders (OBSERVED_SEEDS). They are kept only where the
  geometric shape moves the skin (`support_masked`): the rest is the capture's noise. The
  appearance stage sees a jump from one expression to the next here, and on the largest jumps it
  loses points that real footage, moving continuously, lets it keep: at weight 0.7 every render
  of jawOpen kept either the chin or the lower lip in place and the median kept the lip still
  (+0.3 mm at weight 1, against ICT's -33), so the fit read a dropping lower lip as mouthFunnel.
  At OBSERVED_WEIGHT 0.35 the jumps are half as large and the lip drops (-16 mm; the chin -24
  as before); on the expression bench the mean r rose or held and the mean error fell for every
  method and clip set (ours on the scored clips: r 0.720 -> 0.746, error 0.050 -> 0.043;
  mouthFunnel r 0.41 -> 0.93; bench/expressions/report.md). (A clip ramping each expression in
  and out scored worse in an early session, one render: 3 of 16 curves against 6.)
* the ``pose_bias``: the head at rest turning through yaw and pitch (`pose_spec`); each
  landmark's head-frame position, fitted linearly in the solver's `pose_terms`, says how the
  capture bends a face at rest as it turns.

The solver fits the observed basis, less the pose bias, by default.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
from scipy.interpolate import RBFInterpolator

from model_runtime.template import load_template
from model_runtime.expressions.arkit import ARKIT_NAMES, INDEX, normalise_name
from model_runtime.expressions.surface import closest_on_surface, interpolate

DATA = Path(__file__).resolve().parents[1] / "model_runtime" / "data"
BASIS_PATH = DATA / "arkit_basis.npz"
LICENSE_PATH = DATA / "ICT-FaceKit-LICENSE.txt"
ICT_PATH = Path(__file__).resolve().parents[2] / "shared" / "assets" / "ict_face_model" / "ict_face_model.npz"
ICT_FACE_REGION = 0
BASIS_VERSION = 1

# iBUG 68 landmark -> MediaPipe Face Mesh landmark at the same place on the face.
IBUG_TO_MEDIAPIPE = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # jaw 0-16
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows 17-26
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose 27-35
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes 36-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
)
USED_IBUG = np.r_[3:14, 17:68]
TPS_SMOOTHING = 1e-5
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_BAND_M = (0.006, 0.02)  # the lip rule applies this far beyond the corners (x) and the lip line (y)
OBSERVED_WEIGHT = 0.35
SUPPORT_M = 0.0003  # a geometric offset above this (metres at weight 1) marks skin that a shape moves
OBSERVED_SEEDS = (7, 8, 9, 10, 11)
"""Light, skin and camera distance of the measuring renders (none of the benchmark's): one
render's capture disagrees with another's (a cosine of 0.5 to 0.9 between the same shape's
offsets; in one of them jawOpen's chin stays put), so the basis is their median."""
OBSERVED_SIZE, OBSERVED_SAMPLES = 384, 16
POSE_FRAMES = 48
POSE_SWEEP_DEG = (25.0, 12.0)  # yaw and pitch amplitudes of the pose-bias measuring clip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="model_runtime.expressions.build_basis", description=__doc__.splitlines()[0])
    parser.add_argument("--ict", type=Path, default=ICT_PATH, help="ict_face_model.npz")
    parser.add_argument("--observed", action="store_true",
                        help="also measure the observed basis and the pose bias (renders with Blender's Python "
                             "the first time: a few minutes)")
    args = parser.parse_args(argv)
    if not args.ict.is_file():
        print(f"error: the ICT face model is missing: {args.ict}\n"
              "hint: put the shared assets folder beside the checkout (../shared).", file=sys.stderr)
        return 2
    basis, distance = derive_basis(args.ict)
    arrays = {"names": np.array(ARKIT_NAMES), "basis": basis.astype(np.float32), "version": np.int32(BASIS_VERSION)}
    if args.observed:
        arrays["observed"] = support_masked(measure_observed_basis(), basis).astype(np.float32)
        arrays["pose_bias"] = measure_pose_bias().astype(np.float32)
    elif BASIS_PATH.is_file():  # keep the measured arrays from the last --observed run
        with np.load(BASIS_PATH, allow_pickle=False) as previous:
            arrays.update({key: previous[key] for key in ("observed", "pose_bias") if key in previous.files})
    np.savez_compressed(BASIS_PATH, **arrays)
    shutil.copyfile(args.ict.parent / "LICENSE", LICENSE_PATH)
    print(f"wrote {BASIS_PATH} ({basis.shape[0]} shapes x {basis.shape[1]} vertices); "
          f"template to ICT surface: median {1000 * np.median(distance):.2f} mm, max {1000 * distance.max():.2f} mm")
    return 0


def derive_basis(ict_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(52, 478, 3) offsets on the template, and each template vertex's distance to the warped
    ICT surface (metres; small where the registration fits)."""
    template = load_template()
    with np.load(ict_path, allow_pickle=False) as ict:
        neutral = ict["neutral"].astype(np.float64) / 100.0
        expressions = ict["expression_basis"].astype(np.float64) / 100.0
        names = [str(name) for name in ict["expression_names"]]
        landmarks = ict["landmarks68"]
        region = ict["region"]
        faces = ict["faces"]
    triangles = _face_triangles(faces, region)
    targets = template.vertices[np.array(IBUG_TO_MEDIAPIPE)[USED_IBUG]]
    scale, rotation, shift = umeyama(neutral[landmarks[USED_IBUG]], targets)
    aligned = scale * neutral @ rotation.T + shift
    warp = RBFInterpolator(aligned[landmarks[USED_IBUG]], targets - aligned[landmarks[USED_IBUG]],
                           kernel="thin_plate_spline", smoothing=TPS_SMOOTHING)
    warped = aligned + warp(aligned)
    triangle, weights, distance = _lip_aware_closest(template.vertices, warped, triangles)
    offsets = interpolate(scale * expressions @ rotation.T, triangles, triangle, weights)  # (53, 478, 3)
    basis = np.zeros((len(ARKIT_NAMES), len(template.vertices), 3))
    for name, offset in zip(names, offsets):
        basis[INDEX[_arkit_name(name)]] += offset
    return basis, distance


def observed_spec(seed: int = OBSERVED_SEEDS[0]):
    """A measuring clip: ICT's generic head (no identity offsets) facing the camera, frame 0 at
    rest, frame k making ICT expression k-1 at OBSERVED_WEIGHT; `seed` draws the light, skin,
    background and camera distance."""
    from bench.sequences import load_face_model, make_sequence

    model = load_face_model()
    count = len(model.expression_names)
    spec = make_sequence("talk", seed, count + 1, OBSERVED_SIZE, model=model)
    spec.identity = np.zeros_like(spec.identity)
    spec.expressions = np.vstack([np.zeros(count), OBSERVED_WEIGHT * np.eye(count)])
    spec.head_angles = np.zeros_like(spec.head_angles)
    spec.head_positions = np.repeat(spec.head_positions[:1], count + 1, axis=0)
    return spec, model.expression_names


def measure_observed_basis() -> np.ndarray:
    """(52, 478, 3): each ARKit shape as the capture sees it, the per-coordinate median over the
    measuring clips of OBSERVED_SEEDS (see the module docstring)."""
    measured = []
    for seed in OBSERVED_SEEDS:
        spec, ict_names = observed_spec(seed)
        landmarks, _ = _captured_landmarks(spec, "observed")
        measured.append((landmarks[1:] - landmarks[0]) / OBSERVED_WEIGHT)  # (53, 478, 3) in ICT's order
    offsets = np.median(measured, axis=0)
    observed = np.zeros((len(ARKIT_NAMES), 478, 3))
    for name, offset in zip(ict_names, offsets):
        observed[INDEX[_arkit_name(name)]] += offset
    return observed


def support_masked(observed: np.ndarray, geometric: np.ndarray) -> np.ndarray:
    """The observed basis kept only where its shape moves the skin: within one ring of template
    neighbours of a vertex that the geometric shape moves by more than SUPPORT_M at weight 1.
    Elsewhere a measured offset is the capture's noise between two frames, not the shape, and
    would let a mouth shape answer for a brow (crosstalk)."""
    moved = (np.linalg.norm(geometric, axis=2) > SUPPORT_M).astype(np.float64)  # (52, 478)
    triangles = load_template().triangles
    neighbours = np.zeros((len(moved[0]), len(moved[0])))
    for a, b in ((0, 1), (1, 2), (2, 0)):
        neighbours[triangles[:, a], triangles[:, b]] = neighbours[triangles[:, b], triangles[:, a]] = 1.0
    support = (moved + moved @ neighbours) > 0
    return observed * support[:, :, None]


def pose_spec():
    """The pose-bias measuring clip: the measuring head at rest, turning smoothly through yaw and
    pitch (a Lissajous sweep of POSE_SWEEP_DEG), facing the camera at frame 0."""
    from bench.sequences import load_face_model, make_sequence

    spec = make_sequence("talk", OBSERVED_SEEDS[0], POSE_FRAMES, OBSERVED_SIZE, model=load_face_model())
    spec.identity = np.zeros_like(spec.identity)
    spec.expressions = np.zeros_like(spec.expressions)
    phase = 2 * np.pi * np.arange(POSE_FRAMES) / POSE_FRAMES
    yaw, pitch = POSE_SWEEP_DEG
    spec.head_angles = np.stack([yaw * np.sin(phase), pitch * np.sin(2 * phase), np.zeros(POSE_FRAMES)], axis=1)
    spec.head_positions = np.repeat(spec.head_positions[:1], POSE_FRAMES, axis=0)
    return spec


def measure_pose_bias() -> np.ndarray:
    """(POSE_TERMS, 478, 3): how the capture deforms a face at rest as the head turns, per vertex
    in the head frame, linear in the terms of `pose_terms` (fitted over the measuring clip)."""
    from model_runtime.expressions.solver import head_angles, pose_terms

    landmarks, poses = _captured_landmarks(pose_spec(), "pose")
    terms = pose_terms(head_angles(poses))
    design = np.hstack([np.ones((len(terms), 1)), terms])
    coefficients, *_ = np.linalg.lstsq(design, landmarks.reshape(len(landmarks), -1), rcond=None)
    return coefficients[1:].reshape(terms.shape[1], -1, 3)


def _captured_landmarks(spec, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Render (once, cached), capture and reconstruct (no smoothing) a measuring clip: its
    template landmarks in the head frame (T, 478, 3) and its head poses (T, 4, 4)."""
    from bench.paths import CACHE
    from model_runtime.capture import CaptureOptions, run_capture
    from model_runtime.reconstruct import ReconstructOptions, reconstruct
    from model_runtime.reconstruction_format import load_reconstruction, reconstruction_dir
    from model_runtime.expressions.solver import to_head_frame

    folder = CACHE / "basis" / f"{name}-{spec.fingerprint()}"
    if not (folder / "done.json").is_file():
        from bench.expression_curves import render_spec

        print(f"rendering the {spec.frame_count} {name} measuring frames...", flush=True)
        render_spec(spec, folder, OBSERVED_SAMPLES)
    capture_dir = folder / "capture"
    run_capture(folder / "frames", capture_dir, CaptureOptions(focal=f"{spec.focal_px:g}px", overwrite=True))
    reconstruct(capture_dir, ReconstructOptions(smooth="off"))
    reconstruction = load_reconstruction(reconstruction_dir(capture_dir), memory_map=False)
    return to_head_frame(reconstruction.vertices[:, :478], reconstruction.head_pose), reconstruction.head_pose


def _arkit_name(ict_name: str) -> str:
    key = normalise_name(ict_name)
    arkit = next((n for n in ARKIT_NAMES if normalise_name(n) == key), None)
    if arkit is None:  # browInnerUp_L / cheekPuff_R: halves of one ARKit shape
        arkit = next(n for n in ARKIT_NAMES if key.startswith(normalise_name(n)))
    return arkit


def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale, rotation and shift minimising |scale * R source + shift - target|^2."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    s, t = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(t.T @ s)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(sigma) @ d) / (s ** 2).sum())
    return scale, rotation, mu_t - scale * rotation @ mu_s


def _face_triangles(faces: np.ndarray, region: np.ndarray) -> np.ndarray:
    quads = faces[faces[:, 3] >= 0]
    triangles = np.concatenate([faces[:, :3], quads[:, [0, 2, 3]]])
    return triangles[(region[triangles] == ICT_FACE_REGION).all(axis=1)].astype(np.int32)


def _lip_aware_closest(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray):
    """closest_on_surface, with points near the mouth matched on their own side of the lip line."""
    point_side = _mouth_side(points)
    vertex_side = _mouth_side(vertices)
    triangle_side = np.where((vertex_side[triangles] < 0).any(axis=1), -1,
                             np.where((vertex_side[triangles] > 0).any(axis=1), 1, 0))
    result = list(closest_on_surface(points, vertices, triangles))
    for side in (-1, 1):
        chosen = point_side == side
        allowed = np.nonzero(triangle_side != -side)[0]
        triangle, weights, distance = closest_on_surface(points[chosen], vertices, triangles[allowed])
        result[0][chosen], result[1][chosen], result[2][chosen] = allowed[triangle], weights, distance
    return tuple(result)


def _mouth_side(points: np.ndarray) -> np.ndarray:
    """+1 above the template's inner-lip line, -1 below it, 0 away from the mouth."""
    vertices = load_template().vertices
    line = (vertices[list(UPPER_INNER_LIP)] + vertices[list(LOWER_INNER_LIP)]) / 2
    order = np.argsort(line[:, 0])
    line_y = np.interp(points[:, 0], line[order, 0], line[order, 1])
    near_x = np.abs(points[:, 0]) < line[:, 0].max() + MOUTH_BAND_M[0]
    near = near_x & (np.abs(points[:, 1] - line_y) < MOUTH_BAND_M[1])
    return np.where(near, np.sign(points[:, 1] - line_y), 0).astype(np.int8)


if __name__ == "__main__":
    sys.exit(main())
