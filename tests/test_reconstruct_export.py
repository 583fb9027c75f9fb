"""CSV point tracks and OBJ/PLY meshes written from a reconstruction, read back."""
import csv
import shutil

import numpy as np
import pytest

from model_runtime.errors import UserError
from model_runtime.reconstruct import ReconstructOptions, reconstruct
from model_runtime.reconstruct.export import export_files, export_mesh, export_tracks_csv
from model_runtime.reconstruction_format import load_reconstruction
from tests.fixtures.synthetic import SyntheticClip, write_capture

CLIP = SyntheticClip(frame_count=6, occluded=(3,))


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    folder = write_capture(tmp_path_factory.mktemp("export") / "capture", CLIP)
    reconstruct(folder, ReconstructOptions(density="low"), template=CLIP.template)
    return folder


def test_tracks_csv_has_one_row_per_point_and_frame(capture, tmp_path):
    recon = load_reconstruction(capture / "reconstruction")
    path = export_tracks_csv(capture, tmp_path / "tracks.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["frame", "name", "x", "y", "visible"]
    assert len(rows) == CLIP.frame_count * len(recon.point_names)
    lip = [row for row in rows if row["name"] == "lower_lip_outer"]
    assert [row["visible"] for row in lip] == ["1", "1", "1", "0", "1", "1"]
    assert [int(row["frame"]) for row in lip] == list(recon.frame_numbers) == list(range(1, CLIP.frame_count + 1))
    index = recon.point_names.index("lower_lip_outer")
    np.testing.assert_allclose([float(lip[4]["x"]), float(lip[4]["y"])], recon.point_pixels[4, index], atol=1e-3)


def test_obj_holds_the_mesh_at_the_chosen_frame_upright(capture, tmp_path):
    recon = load_reconstruction(capture / "reconstruction")
    path = export_mesh(capture / "reconstruction", tmp_path / "face.obj", frame=3)  # footage frame 3: index 2
    lines = path.read_text().splitlines()
    vertices = np.array([[float(v) for v in line.split()[1:]] for line in lines if line.startswith("v ")])
    uvs = np.array([[float(v) for v in line.split()[1:]] for line in lines if line.startswith("vt ")])
    faces = [line.split()[1:] for line in lines if line.startswith("f ")]
    np.testing.assert_allclose(vertices, recon.vertices[2] * [1, -1, -1], atol=1e-6)
    np.testing.assert_allclose(uvs, recon.uv, atol=1e-6)
    assert len(faces) == len(recon.triangles)
    assert faces[0] == [f"{i + 1}/{i + 1}" for i in recon.triangles[0]]
    opencv = export_mesh(capture, tmp_path / "opencv.obj", frame=3, axes="opencv").read_text()
    assert opencv.splitlines()[1] == "v {:.6f} {:.6f} {:.6f}".format(*recon.vertices[2, 0])


def test_ply_is_binary_with_texture_coordinates(capture, tmp_path):
    recon = load_reconstruction(capture / "reconstruction")
    data = export_mesh(capture, tmp_path / "face.ply", frame=2).read_bytes()
    header, body = data.split(b"end_header\n", 1)
    assert b"format binary_little_endian 1.0" in header and b"property float s" in header
    vertex_type = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("s", "<f4"), ("t", "<f4")])
    count = len(recon.uv)
    vertex = np.frombuffer(body[: count * vertex_type.itemsize], vertex_type)
    np.testing.assert_allclose(np.stack([vertex["x"], -vertex["y"], -vertex["z"]], axis=1), recon.vertices[1], atol=1e-6)
    faces = np.frombuffer(body[count * vertex_type.itemsize :], np.dtype([("n", "u1"), ("i", "<i4", (3,))]))
    assert (faces["n"] == 3).all()
    np.testing.assert_array_equal(faces["i"], recon.triangles)


def test_exports_explain_what_is_wrong(capture, tmp_path):
    with pytest.raises(UserError, match="holds no reconstruction") as missing:
        export_tracks_csv(tmp_path, tmp_path / "tracks.csv")
    assert "reconstruct" in missing.value.hint
    with pytest.raises(UserError, match="frame 99 is not in the reconstruction .its frames are 1 to 6"):
        export_mesh(capture, tmp_path / "face.obj", frame=99)
    with pytest.raises(UserError, match=".stl"):
        export_mesh(capture, tmp_path / "face.stl")
    with pytest.raises(UserError, match="cannot write"):
        export_mesh(capture, tmp_path / "no" / "such" / "face.obj")


def test_a_reconstruction_of_another_capture_is_refused(tmp_path):
    from conftest import sample_file
    from model_runtime.capture import CaptureOptions, run_capture

    clip, options = sample_file("single_face.mp4"), CaptureOptions(frames="0:3")
    run_capture(clip, tmp_path / "cap", options)
    reconstruct(tmp_path / "cap", ReconstructOptions(density="low"))
    export_tracks_csv(tmp_path / "cap", tmp_path / "tracks.csv")
    shutil.copytree(tmp_path / "cap" / "reconstruction", tmp_path / "reconstruction of cap")
    other = shutil.copy(clip, tmp_path / "other footage.mp4")  # another file: another capture
    run_capture(other, tmp_path / "cap", CaptureOptions(frames="0:3", overwrite=True))
    for leftover in ("a new capture", "a reconstruction copied in"):
        with pytest.raises(UserError, match="reconstruct") as raised:
            export_tracks_csv(tmp_path / "cap", tmp_path / "stale.csv")
        assert raised.value.code == "no_reconstruction", leftover
        with pytest.raises(UserError, match="reconstruct"):
            export_files(tmp_path / "cap", {"livelink_csv": str(tmp_path / "stale livelink.csv")})
        shutil.copytree(tmp_path / "reconstruction of cap", tmp_path / "cap" / "reconstruction", dirs_exist_ok=True)
    assert "made from another capture" in raised.value.message and "other footage.mp4" in raised.value.message
    assert not (tmp_path / "stale.csv").exists() and not (tmp_path / "stale livelink.csv").exists()
    reconstruct(tmp_path / "cap", ReconstructOptions(density="low"))
    assert export_tracks_csv(tmp_path / "cap", tmp_path / "new.csv").is_file()
