"""Expression curves of a real clip (the sample clip through the real capture and
reconstruction), written into the reconstruction folder, and the Live Link Face CSV round trip."""
import csv

import numpy as np
import pytest

from conftest import sample_file
from model_runtime.capture import CaptureOptions, run_capture
from model_runtime.errors import InputError, UserError
from model_runtime.expressions.arkit import ARKIT_NAMES
from model_runtime.expressions.curves import VerticesOnDisk, solve_capture
from model_runtime.expressions.livelink import HEADER, export_livelink_csv, read_livelink_csv, timecode_seconds
from model_runtime.expressions.solver import head_angles
from model_runtime.reconstruct import ReconstructOptions, reconstruct
from model_runtime.reconstruction_format import load_expression_curves, load_reconstruction, reconstruction_dir


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    folder = tmp_path_factory.mktemp("expressions") / "capture"
    run_capture(sample_file("single_face.mp4"), folder, CaptureOptions())
    reconstruct(folder, ReconstructOptions())
    return folder


def test_curves_are_written_beside_the_reconstruction(capture):
    path = solve_capture(capture)
    assert path == reconstruction_dir(capture) / "expressions.npz"
    curves = load_expression_curves(path.parent)
    reconstruction = load_reconstruction(path.parent)
    frames = reconstruction.frame_count
    assert curves.names == list(ARKIT_NAMES)
    assert curves.weights.shape == (frames, 52) and curves.weights.dtype == np.float32
    assert 0 <= curves.weights.min() and curves.weights.max() <= 1
    assert curves.weights.std(axis=0).max() > 0.02  # the face in the clip moves
    np.testing.assert_allclose(curves.head_rotation, head_angles(reconstruction.head_pose))
    np.testing.assert_allclose(curves.head_translation, reconstruction.head_pose[:, :3, 3])
    assert curves.eye_gaze.shape == (frames, 2, 2) and np.abs(curves.eye_gaze).max() < np.radians(40)
    assert curves.neutral_frame == -1


def test_the_smile_held_to_the_end_of_the_clip_reads_with_an_estimated_neutral(capture):
    """The sample clip is at rest, then smiles from about its 20th frame to its end: the
    estimated neutral is the rest, not the smile that fills most of the clip."""
    from model_runtime.expressions.arkit import INDEX

    weights = load_expression_curves(solve_capture(capture).parent).weights
    smile = weights[:, INDEX["mouthSmileLeft"]]
    assert np.median(smile[:15]) < 0.1 and np.median(smile[25:]) > 0.3


def test_a_chosen_neutral_frame_reads_as_rest(capture):
    curves = load_expression_curves(solve_capture(capture, neutral_frame=5).parent)
    assert curves.neutral_frame == 5
    assert curves.weights[5].max() < 0.25  # only the temporal smoothing pulls it off zero
    assert np.abs(curves.eye_gaze[5]).max() < 1e-9


def test_rest_frames_given_as_footage_frames_read_as_rest(capture):
    """The sample clip's first frames are at rest (its head barely turns, so the pose terms are
    held by the ridge): the rest frames option, through the reconstruction, makes them the
    neutral, and the smile after them still reads."""
    from model_runtime.expressions.arkit import INDEX

    reconstruct(capture, ReconstructOptions(rest_frames="0:15"))
    weights = load_expression_curves(reconstruction_dir(capture)).weights
    assert np.median(weights[:16], axis=0).max() < 0.1
    assert np.median(weights[25:, INDEX["mouthSmileLeft"]]) > 0.3
    with pytest.raises(UserError, match="rest frames hold 0 frame"):
        reconstruct(capture, ReconstructOptions(rest_frames="500:600"))


def test_live_link_face_csv_reimports_into_the_same_curves(capture, tmp_path):
    solve_capture(capture)
    curves = load_expression_curves(reconstruction_dir(capture))
    path = export_livelink_csv(capture, tmp_path / "take.csv")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == HEADER and len(rows[0]) == 63
    assert rows[1][1] == "61" and rows[0][2] == "EyeBlinkLeft" and rows[0][-9] == "HeadYaw"
    take = read_livelink_csv(path)
    np.testing.assert_allclose(take.weights, curves.weights, atol=1e-6)
    np.testing.assert_allclose(take.head_rotation, curves.head_rotation, atol=1e-6)
    np.testing.assert_allclose(take.eye_gaze, curves.eye_gaze, atol=1e-6)
    reconstruction = load_reconstruction(reconstruction_dir(capture))
    fps = float(reconstruction.header["fps"])
    seconds = [timecode_seconds(code, fps) for code in take.timecodes]
    np.testing.assert_allclose(seconds, reconstruction.timestamps, atol=0.5e-3 / fps + 1e-9)


def test_bad_input_is_explained(capture, tmp_path):
    with pytest.raises(UserError, match="reconstruct"):
        solve_capture(tmp_path)
    with pytest.raises(UserError, match="neutral frame 9999"):
        solve_capture(capture, neutral_frame=9999)
    with pytest.raises(UserError, match="at least 3"):
        solve_capture(capture, rest_frames=(4, 5))
    other = tmp_path / "other.csv"
    other.write_text("frame,name,x,y\n0,a,1,2\n")
    with pytest.raises(InputError, match="other.csv is not a Live Link Face CSV"):
        read_livelink_csv(other)
    with pytest.raises(InputError, match="missing.csv"):
        read_livelink_csv(tmp_path / "missing.csv")


def test_a_dense_mesh_takes_the_gaze_from_the_capture_landmarks(tmp_path):
    folder = tmp_path / "capture"
    run_capture(sample_file("single_face.mp4"), folder, CaptureOptions(frames="0:24"))
    reconstruct(folder, ReconstructOptions(mesh="dense"))
    curves = load_expression_curves(solve_capture(folder).parent)
    assert load_reconstruction(reconstruction_dir(folder)).header["mesh_mode"] == "dense"
    assert curves.weights.shape == (24, 52) and 0 <= curves.weights.min() and curves.weights.max() <= 1
    assert np.abs(curves.eye_gaze).max() > 0  # the irises came from the capture's landmarks


def test_the_vertices_on_disk_are_read_a_run_of_frames_at_a_time(capture):
    folder = reconstruction_dir(capture)
    vertices = load_reconstruction(folder, memory_map=False).vertices
    columns = np.array([3, 0, 478, 1000])
    on_disk = VerticesOnDisk(folder)
    np.testing.assert_array_equal(on_disk[5:17, columns], vertices[5:17, columns])
    np.testing.assert_array_equal(on_disk[:, columns], vertices[:, columns])
    with pytest.raises(IndexError, match="a run of frames"):
        on_disk[[1, 2], columns]
