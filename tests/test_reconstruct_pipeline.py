"""End to end on synthetic captures with known motion: trajectories, head pose, points, gaps,
occlusion, smoothing, the output folder, cancelling."""
import dataclasses
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from model_runtime.capture_folder import frame_path
from model_runtime.errors import Cancelled, CaptureFolderError, UserError
from model_runtime.reconstruct import ReconstructOptions, pipeline, reconstruct, store
from model_runtime.reconstruction_format import FRAME_FILLED, FRAME_HELD, FRAME_TRACKED, load_reconstruction
from tests.fixtures.synthetic import SyntheticClip, synthetic_template, write_capture

CLEAN = SyntheticClip(frame_count=30)
GAPPY = SyntheticClip(frame_count=40, no_face=(0, 1, 15, 16, 17, 39), occluded=tuple(range(22, 30)))
# Slow, smooth motion with 1.5 mm depth noise per pixel, for the smoothing tests.
SLOW = dict(frame_count=50, yaw=10.0, pitch=4.0, shift=0.01, jaw_drop=0.004, period=80.0)


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    root = tmp_path_factory.mktemp("captures")
    clips = {
        "clean": CLEAN,
        "gappy": GAPPY,
        "slow": SyntheticClip(**SLOW),
        "noisy": SyntheticClip(**SLOW, depth_noise=0.0015),
    }
    return {name: (write_capture(root / name, clip), clip) for name, clip in clips.items()}


def run(capture, template=None, **options):
    folder, clip = capture
    return load_reconstruction(reconstruct(folder, ReconstructOptions(**options), template=template or clip.template), memory_map=False)


def truth(clip, canonical):
    return np.stack([clip.true_positions(np.asarray(canonical, np.float64), t) for t in range(clip.frame_count)])


def rotation_error_degrees(a, b):
    return np.degrees(Rotation.from_matrix(a[..., :3, :3] @ np.swapaxes(b[..., :3, :3], -1, -2)).magnitude())


def jitter(positions):
    """Mean norm of the second difference in time (units per frame squared)."""
    return float(np.linalg.norm(np.diff(positions, n=2, axis=0), axis=-1).mean())


@pytest.mark.parametrize("density", ["low", "high"])
def test_template_mode_recovers_trajectories_and_head_pose(captures, density):
    recon = run(captures["clean"], density=density, smooth="off")
    clip = CLEAN
    error = np.linalg.norm(recon.vertices - truth(clip, recon.canonical_vertices), axis=-1)
    assert error.mean() < 6e-5 and error.max() < 1e-3
    assert not recon.vertex_filled.any()
    assert (recon.frame_state == FRAME_TRACKED).all()
    poses = np.stack([clip.pose(t) for t in range(clip.frame_count)])
    assert rotation_error_degrees(recon.head_pose, poses).max() < 0.05
    assert np.abs(recon.head_pose[:, :3, 3] - poses[:, :3, 3]).max() < 2e-4


def test_named_points_follow_the_template_landmarks(captures):
    recon = run(captures["clean"], density="medium", smooth="off")
    template = CLEAN.template
    assert recon.point_names == list(template.landmarks)
    canonical = template.vertices[list(template.landmarks.values())]
    np.testing.assert_allclose(recon.point_canonical, canonical, atol=1e-7)
    expected = truth(CLEAN, canonical)
    assert np.linalg.norm(recon.point_positions - expected, axis=-1).max() < 1e-3
    projected = np.einsum("ij,tpj->tpi", CLEAN.intrinsics, expected)
    pixels = projected[..., :2] / projected[..., 2:]
    assert np.linalg.norm(recon.point_pixels - pixels, axis=-1).max() < 0.8
    assert recon.point_visible.all()


def test_dense_mode_needs_no_template_and_tracks_its_own_vertices(captures, tmp_path):
    folder = write_capture(tmp_path / "other_space", dataclasses.replace(CLEAN, template=dataclasses.replace(synthetic_template(), space_id="another-space")))
    with pytest.raises(UserError, match="no template mesh") as refused:
        reconstruct(folder, ReconstructOptions(mesh="template"))
    assert "--mesh dense" in refused.value.hint
    recon = load_reconstruction(reconstruct(folder, ReconstructOptions(mesh="dense", smooth="off")))
    assert 1200 <= recon.vertices.shape[1] <= 2600
    assert recon.point_names == []
    assert recon.header["mesh_mode"] == "dense" and recon.header["settings"]["reference_frame"] == 0
    error = np.linalg.norm(recon.vertices - truth(CLEAN, recon.canonical_vertices), axis=-1)
    assert error.mean() < 6e-5 and error.max() < 1e-3
    assert recon.uv.min() >= 0 and recon.uv.max() <= 1


def test_frames_without_a_face_are_flagged_and_filled_across(captures):
    recon = run(captures["gappy"], density="medium", smooth="off")
    states = recon.frame_state
    assert list(np.flatnonzero(states == FRAME_HELD)) == [0, 1, 39]
    assert list(np.flatnonzero(states == FRAME_FILLED)) == [15, 16, 17]
    assert recon.vertex_filled[[0, 1, 15, 16, 17, 39]].all()
    assert (recon.vertex_confidence[[0, 1, 15, 16, 17, 39]] == 0).all()
    assert not recon.point_visible[[0, 1, 15, 16, 17, 39]].any()
    # Held at the ends: the first and last tracked frames, repeated.
    np.testing.assert_allclose(recon.vertices[0], recon.vertices[2], atol=1e-6)
    np.testing.assert_allclose(recon.vertices[39], recon.vertices[38], atol=1e-6)
    np.testing.assert_allclose(recon.head_pose[1], recon.head_pose[2], atol=1e-9)
    # Filled across: the head turns on between frames 14 and 18, with no jump at either end.
    steps = np.linalg.norm(np.diff(recon.vertices[14:19], axis=0), axis=-1).max(axis=1)
    true_steps = np.linalg.norm(np.diff(truth(GAPPY, recon.canonical_vertices)[14:19], axis=0), axis=-1).max(axis=1)
    assert (steps < 1.3 * true_steps.max()).all()
    turned = rotation_error_degrees(recon.head_pose[14], recon.head_pose[18])
    for t in (15, 16, 17):
        assert rotation_error_degrees(recon.head_pose[14], recon.head_pose[t]) < turned
    error = np.linalg.norm(recon.vertices[15:18] - truth(GAPPY, recon.canonical_vertices)[15:18], axis=-1)
    assert error.max() < 3e-3


def test_occluded_vertices_are_flagged_and_filled_from_pose_and_neighbours(captures):
    recon = run(captures["gappy"], density="medium", smooth="off")
    canonical = recon.canonical_vertices
    under_hand = (canonical[:, 1] < -0.05) & (np.abs(canonical[:, 0]) < 0.03)
    clear = (canonical[:, 1] > -0.035) | (np.abs(canonical[:, 0]) > 0.04)
    occluded = slice(22, 30)
    assert recon.vertex_filled[occluded][:, under_hand].all()
    assert not recon.vertex_filled[occluded][:, clear].any()
    assert (recon.frame_state[occluded] == FRAME_TRACKED).all()
    error = np.linalg.norm(recon.vertices - truth(GAPPY, canonical), axis=-1)
    assert error[occluded][:, under_hand].max() < 5e-3  # the jaw moves while hidden: interpolated, not seen
    assert error[occluded][:, clear].max() < 1e-3
    # No jumps where the hand comes and goes.
    steps = np.linalg.norm(np.diff(recon.vertices[20:32], axis=0), axis=-1)[:, under_hand]
    true_steps = np.linalg.norm(np.diff(truth(GAPPY, canonical)[20:32], axis=0), axis=-1)[:, under_hand]
    assert steps.max() < true_steps.max() + 1.5e-3
    mouth = recon.point_names.index("lower_lip_outer")
    assert not recon.point_visible[occluded, mouth].any() and recon.point_visible[20, mouth]


def test_smoothing_cuts_jitter_on_noisy_input(captures):
    clip = captures["noisy"][1]
    raw = run(captures["noisy"], density="low", smooth="off")
    smooth = run(captures["noisy"], density="low", smooth="on")
    expected = truth(clip, raw.canonical_vertices)
    assert jitter(smooth.vertices - expected) < 0.4 * jitter(raw.vertices - expected)
    assert np.linalg.norm(smooth.vertices - expected, axis=-1).mean() < 0.8 * np.linalg.norm(raw.vertices - expected, axis=-1).mean()
    expected_pixels = np.einsum("ij,tpj->tpi", clip.intrinsics, truth(clip, raw.point_canonical))
    expected_pixels = expected_pixels[..., :2] / expected_pixels[..., 2:]
    assert jitter(smooth.point_pixels - expected_pixels) < 0.4 * jitter(raw.point_pixels - expected_pixels)
    poses = np.stack([clip.pose(t) for t in range(clip.frame_count)])
    assert rotation_error_degrees(smooth.head_pose, poses).mean() < rotation_error_degrees(raw.head_pose, poses).mean()


def test_smoothing_does_not_shift_a_clean_signal(captures):
    clip = captures["slow"][1]
    raw = run(captures["slow"], density="low", smooth="off")
    smooth = run(captures["slow"], density="low", smooth="on")
    expected = truth(clip, raw.canonical_vertices)
    raw_error = np.linalg.norm(raw.vertices - expected, axis=-1)
    smooth_error = np.linalg.norm(smooth.vertices - expected, axis=-1)
    assert smooth_error.mean() <= raw_error.mean() and smooth_error.max() < raw_error.max() + 5e-5
    poses = np.stack([clip.pose(t) for t in range(clip.frame_count)])
    assert rotation_error_degrees(smooth.head_pose, poses).max() < 0.02


def test_user_points_by_canonical_coordinate_and_by_pixel(captures):
    folder, clip = captures["clean"]
    picked_frame = 4
    picked = clip.true_positions(clip.template.vertices[[40]], picked_frame)[0] @ clip.intrinsics.T
    x, y = picked[:2] / picked[2]
    coordinate = clip.template.vertices[100]
    number = picked_frame + 1  # pixel:FRAME names the footage frame number (from 1 in a synthetic capture)
    recon = run(captures["clean"], density="low", smooth="off", points=[f"picked=pixel:{number}:{x}:{y}", list(coordinate)])
    assert recon.point_names[-2:] == ["picked", "user_1"]
    np.testing.assert_allclose(recon.point_pixels[picked_frame, -2], [x, y], atol=0.05)
    np.testing.assert_allclose(recon.point_canonical[-2], clip.template.vertices[40], atol=5e-5)
    expected = truth(clip, coordinate[None])[:, 0]
    assert np.linalg.norm(recon.point_positions[:, -1] - expected, axis=-1).max() < 5e-4
    with pytest.raises(UserError, match="not on the face"):
        reconstruct(folder, ReconstructOptions(points=["pixel:1:2:2"]), template=clip.template)
    with pytest.raises(UserError, match="no landmark named"):
        reconstruct(folder, ReconstructOptions(points=["third_eye"]), template=clip.template)


def test_output_folder_is_complete_and_records_what_made_it(captures):
    folder, clip = captures["clean"]
    frames_seen = []
    reconstruct(folder, ReconstructOptions(density="medium"), progress=lambda done, total: frames_seen.append((done, total)), template=clip.template)
    assert frames_seen == [(t + 1, clip.frame_count) for t in range(clip.frame_count)]
    recon = load_reconstruction(folder / "reconstruction")
    header = json.loads((folder / "reconstruction" / "header.json").read_text())
    assert header["format"] == "faceanything-reconstruction" and header["format_version"] == 2
    manifest = json.loads((folder / "manifest.json").read_text())
    assert header["capture_fingerprint"] == f"{manifest['source']['fingerprint']}/{manifest['settings_hash']}"
    assert header["canonical_space"] == clip.template.space_id
    assert header["settings"]["density"] == "medium" and header["settings"]["filter"] == "savgol"
    assert header["frame_size"] == list(clip.size) and header["fps"] == clip.fps
    count = recon.vertices.shape[1]
    assert header["vertex_count"] == count == len(recon.canonical_vertices) == len(recon.uv)
    assert recon.vertices.dtype == np.float32 and recon.vertex_confidence.dtype == np.float16
    assert recon.vertex_filled.shape == (clip.frame_count, count) and recon.head_pose.shape == (clip.frame_count, 4, 4)
    np.testing.assert_allclose(recon.intrinsics, np.broadcast_to(clip.intrinsics, recon.intrinsics.shape))
    np.testing.assert_array_equal(recon.source_indices, np.arange(clip.frame_count))
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".reconstruction")]


def test_small_blocks_give_the_same_result(captures, monkeypatch):
    whole = run(captures["gappy"], density="low")
    monkeypatch.setattr(pipeline, "BLOCK_BYTES", 1)  # one vertex per block
    blocked = run(captures["gappy"], density="low")
    np.testing.assert_allclose(blocked.vertices, whole.vertices, atol=1e-7)
    np.testing.assert_array_equal(blocked.vertex_filled, whole.vertex_filled)


def test_a_track_store_on_disk_gives_the_same_result(captures, monkeypatch):
    in_memory = run(captures["gappy"], density="low")
    monkeypatch.setattr(store, "MEMORY_BYTES", 0)  # as for a clip of thousands of frames
    on_disk = run(captures["gappy"], density="low")
    np.testing.assert_array_equal(on_disk.vertices, in_memory.vertices)
    np.testing.assert_array_equal(on_disk.vertex_filled, in_memory.vertex_filled)


def test_cancelling_keeps_the_previous_reconstruction(captures):
    folder, clip = captures["clean"]
    reconstruct(folder, ReconstructOptions(density="low"), template=clip.template)
    before = (folder / "reconstruction" / "header.json").read_text()
    polls = iter(range(100))
    with pytest.raises(Cancelled):
        reconstruct(folder, ReconstructOptions(density="high"), should_cancel=lambda: next(polls) >= 5, template=clip.template)
    assert (folder / "reconstruction" / "header.json").read_text() == before
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".reconstruction")]


def test_an_unfinished_capture_is_refused(captures, tmp_path):
    folder = write_capture(tmp_path / "unfinished", dataclasses.replace(CLEAN, frame_count=4))
    frame_path(folder, 2).unlink()
    with pytest.raises(CaptureFolderError, match="not finished .3 of 4 frames."):
        reconstruct(folder, template=CLEAN.template)
