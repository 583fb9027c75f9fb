"""The capture job on real footage: resumable, refuses the wrong folder, never a partial frame."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, sample_file
from model_runtime.capture import CaptureOptions, run_capture
from model_runtime.capture_folder import CaptureFolder, frame_path
from model_runtime.errors import Cancelled, CaptureFolderError, InputError


def test_frame_range_and_step(face_clip, tmp_path):
    run_capture(face_clip, tmp_path / "cap", CaptureOptions(frames="11:30:5"))
    manifest = CaptureFolder(tmp_path / "cap").manifest
    assert manifest["frames"]["numbers"] == [11, 16, 21, 26]  # footage numbers, both ends included
    assert manifest["frames"]["source_indices"] == [10, 15, 20, 25]
    assert CaptureFolder(tmp_path / "cap").finished_indices() == [0, 1, 2, 3]


def test_cancel_keeps_finished_frames_and_resume_computes_only_the_rest(face_clip, tmp_path):
    seen = []
    with pytest.raises(Cancelled):
        run_capture(face_clip, tmp_path / "cap", CaptureOptions(frames="1:20"),
                    progress=lambda done, total: seen.append(done), should_cancel=lambda: len(seen) >= 8)
    finished = CaptureFolder(tmp_path / "cap").finished_indices()
    assert 8 <= len(finished) < 20
    summary = run_capture(face_clip, tmp_path / "cap", CaptureOptions(frames="1:20"))
    assert summary.computed == 20 - len(finished)
    assert CaptureFolder(tmp_path / "cap").is_complete()
    assert run_capture(face_clip, tmp_path / "cap", CaptureOptions(frames="1:20")).computed == 0


def test_other_settings_or_footage_are_refused_unless_overwritten(face_clip, tmp_path):
    run_capture(face_clip, tmp_path / "cap", CaptureOptions(frames="0:3"))
    with pytest.raises(CaptureFolderError, match="other settings.*focal"):
        run_capture(face_clip, tmp_path / "cap", CaptureOptions(frames="0:3", focal="50mm"))
    other = shutil.copy(face_clip, tmp_path / "other.mp4")
    with pytest.raises(CaptureFolderError, match="other footage"):
        run_capture(other, tmp_path / "cap", CaptureOptions(frames="0:3"))
    summary = run_capture(face_clip, tmp_path / "cap", CaptureOptions(frames="0:3", focal="50mm", overwrite=True))
    assert summary.computed == 3
    assert CaptureFolder(tmp_path / "cap").manifest["focal"] == "50mm"


def test_a_capture_by_an_older_backend_is_computed_again_not_resumed(face_clip, tmp_path, monkeypatch):
    import model_runtime.backends as backends

    run_capture(face_clip, tmp_path / "cap", CaptureOptions(frames="1:3"))
    entry = backends._REGISTRY["mediapipe"]
    monkeypatch.setitem(backends._REGISTRY, "mediapipe", type(entry)(**{**entry.__dict__, "version": "newer"}))
    with pytest.raises(CaptureFolderError, match="another version of the mediapipe backend"):
        run_capture(face_clip, tmp_path / "cap", CaptureOptions(frames="1:3"))
    summary = run_capture(face_clip, tmp_path / "cap", CaptureOptions(frames="1:3", overwrite=True))
    assert summary.computed == 3
    manifest = CaptureFolder(tmp_path / "cap").manifest
    assert manifest["settings"]["backend_version"] == "newer" and "mediapipe-dense newer" in manifest["backend"]["version"]


def test_focal_sets_the_intrinsics(face_clip, tmp_path):
    run_capture(face_clip, tmp_path / "cap", CaptureOptions(frames="0:1", focal="900px"))
    intrinsics = np.array(CaptureFolder(tmp_path / "cap").manifest["intrinsics"])
    assert intrinsics[0, 0] == pytest.approx(900) and intrinsics[1, 1] == pytest.approx(900)
    assert intrinsics[0, 2] == pytest.approx((640 - 1) / 2)


def test_sample_clip_has_a_face_in_every_frame(face_clip, tmp_path):
    summary = run_capture(face_clip, tmp_path / "cap")
    folder = CaptureFolder(tmp_path / "cap")
    assert summary.frames == folder.frame_count == 72
    assert summary.frames_with_face == 72
    manifest = folder.manifest
    assert manifest["backend"]["name"] == "mediapipe"
    assert manifest["backend"]["canonical_space"] == "faceanything-mp478-v1"
    assert manifest["frames"]["timestamps"][:3] == pytest.approx([0.0, 1 / 30, 2 / 30])
    maps = folder.frame(40)
    assert maps.has_face and maps.landmarks2d.shape == (478, 2)
    assert 0.2 < float(np.median(maps.depth[maps.mask])) < 3.0


def test_no_face_anywhere_is_recorded_per_frame_not_fatal(tmp_path):
    warnings = []
    summary = run_capture(sample_file("no_face.mp4"), tmp_path / "cap", CaptureOptions(frames="0:10"),
                          warn=lambda frame, code, text: warnings.append((frame, code)))
    assert summary.frames_with_face == 0 and summary.frames == 10
    assert warnings == [(i, "no_face") for i in range(10)]
    assert not CaptureFolder(tmp_path / "cap").frame(3).has_face


def test_single_images_grayscale_and_rgba(tmp_path):
    for name in ("single_face.jpg", "BWPictureHuman.jpg", "Image_with_alpha.png"):
        summary = run_capture(sample_file(name), tmp_path / name)
        assert summary.frames == 1, name
    assert run_capture(sample_file("single_face.jpg"), tmp_path / "single_face.jpg").frames_with_face == 1


def test_several_faces_take_the_largest(tmp_path):
    summary = run_capture(sample_file("multi_face.jpg"), tmp_path / "cap")
    assert summary.frames_with_face == 1
    maps = CaptureFolder(tmp_path / "cap").frame(0)
    assert maps.mask.sum() > 0


def test_non_ascii_paths_with_spaces(face_clip, tmp_path):
    folder = tmp_path / "prise de vue é 日本"
    folder.mkdir()
    clip = shutil.copy(face_clip, folder / "clip ü.mp4")
    summary = run_capture(clip, folder / "capture ø", CaptureOptions(frames="0:2"))
    assert summary.frames_with_face == 2


def test_missing_input_names_the_path(tmp_path):
    with pytest.raises(InputError, match="nope.mp4"):
        run_capture(tmp_path / "nope.mp4", tmp_path / "cap")


def test_range_outside_the_clip_says_what_is_valid(face_clip, tmp_path):
    with pytest.raises(InputError, match="numbered 1 to 72") as raised:
        run_capture(face_clip, tmp_path / "cap", CaptureOptions(frames="80:90"))
    assert "--frames 1:72" in raised.value.hint


def test_unwritable_output_folder(face_clip, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    with pytest.raises(CaptureFolderError, match="cannot write the capture folder"):
        run_capture(face_clip, blocker / "cap", CaptureOptions(frames="0:2"))


def test_a_killed_capture_leaves_only_whole_frames_and_resumes(face_clip, tmp_path):
    capture_dir = tmp_path / "cap"
    process = subprocess.Popen(
        [sys.executable, "-m", "model_runtime", "capture", str(face_clip), "-o", str(capture_dir)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((capture_dir / "frames").glob("*.npz"))) < 10:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    folder = CaptureFolder(capture_dir)
    finished = folder.finished_indices()
    assert 10 <= len(finished) < 72
    for index in finished:
        folder.frame(index)  # every frame file on disk is whole
    assert run_capture(face_clip, capture_dir).computed == 72 - len(finished)
    assert sorted(p.suffix for p in (capture_dir / "frames").iterdir()) == [".npz"] * 72


def test_frame_files_are_small_and_exact_enough(face_clip, tmp_path):
    run_capture(face_clip, tmp_path / "cap", CaptureOptions(frames="0:1"))
    folder = CaptureFolder(tmp_path / "cap")
    assert os.path.getsize(frame_path(folder.path, 0)) < 400_000
    maps = folder.frame(0)
    # Landmark depths from the backend survive float16 storage to well under a millimetre.
    rows = np.round(maps.landmarks2d[:, 1]).astype(int) - maps.window[1]
    cols = np.round(maps.landmarks2d[:, 0]).astype(int) - maps.window[0]
    inside = maps.mask[rows, cols]
    stored = maps.depth[rows, cols][inside]
    assert np.median(np.abs(stored - maps.landmarks3d[inside, 2])) < 0.003
    assert json.loads((folder.path / "manifest.json").read_text())["format"] == "faceanything-capture"


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "model_runtime", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, **kwargs)


def test_a_damaged_frame_file_is_named_and_computed_again(tmp_path):
    clip, options = sample_file("single_face.mp4"), CaptureOptions(frames="0:5")
    run_capture(clip, tmp_path / "cap", options)
    damaged = frame_path(tmp_path / "cap", 2)
    whole = np.load(damaged)["landmarks2d"]
    damaged.write_bytes(damaged.read_bytes()[:1000])
    warnings = []
    summary = run_capture(clip, tmp_path / "cap", options, warn=lambda frame, code, text: warnings.append((frame, code, text)))
    assert [(frame, code) for frame, code, _ in warnings] == [(2, "damaged_frame")]
    number = CaptureFolder(tmp_path / "cap").frame_numbers[2]  # the footage's own number, as the user sees it
    assert f"frame {number} ({damaged})" in warnings[0][2]
    assert summary.computed >= 1 and CaptureFolder(tmp_path / "cap").is_complete()
    np.testing.assert_array_equal(CaptureFolder(tmp_path / "cap").frame(2).landmarks2d, whole)


def test_a_second_capture_into_the_same_folder_is_refused_naming_the_first(tmp_path):
    capture_dir = tmp_path / "cap"
    first = subprocess.Popen([sys.executable, "-m", "model_runtime", "capture", str(sample_file("single_face.mp4")),
                              "-o", str(capture_dir)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list((capture_dir / "frames").glob("*.npz")):
            time.sleep(0.02)
        started = time.monotonic()
        second = run_cli("capture", sample_file("single_face.mp4"), "-o", capture_dir)
        assert first.poll() is None, "the first capture ended before the second started"
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"process {first.pid}" in second.stderr and "another capture" in second.stderr
        assert time.monotonic() - started < 10
        assert first.wait(timeout=120) == 0, first.communicate()[1]
    finally:
        first.kill()
    folder = CaptureFolder(capture_dir)
    assert folder.is_complete() and folder.damaged_indices() == []


def test_files_follow_the_umask(tmp_path):
    from model_runtime.reconstruct import ReconstructOptions, reconstruct

    previous = os.umask(0o002)
    try:
        run_capture(sample_file("single_face.mp4"), tmp_path / "cap", CaptureOptions(frames="0:2"))
        reconstruct(tmp_path / "cap", ReconstructOptions(density="low"))
    finally:
        os.umask(previous)
    mode = lambda path: path.stat().st_mode & 0o777  # noqa: E731
    capture = tmp_path / "cap"
    assert {mode(path) for path in [capture / "manifest.json", *capture.glob("frames/*.npz")]} == {0o664}
    assert mode(capture / "frames") == mode(capture / "reconstruction") == 0o775
    assert {mode(path) for path in (capture / "reconstruction").iterdir()} == {0o664}


@contextlib.contextmanager
def read_only(folder: Path):
    """Make `folder` and everything in it unwritable: immutable for root (who ignores
    permissions), without write permission for anyone else."""
    paths = [folder, *folder.rglob("*")]
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(["chattr", "-R", "+i", str(folder)]).returncode:
            pytest.skip("needs chattr +i to make a folder read-only for root")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-R", "-i", str(folder)], check=True)
        return
    modes = {path: path.stat().st_mode for path in paths}
    for path in reversed(paths):
        path.chmod(modes[path] & ~0o222)
    try:
        yield
    finally:
        for path, path_mode in modes.items():
            path.chmod(path_mode)


def test_a_capture_folder_that_cannot_be_written_is_named_on_resume_and_on_reconstruct(tmp_path):
    clip, capture_dir = sample_file("single_face.mp4"), tmp_path / "cap"
    run_capture(clip, capture_dir, CaptureOptions(frames="0:3"))
    shutil.copytree(capture_dir, tmp_path / "unfinished")
    frame_path(tmp_path / "unfinished", 2).unlink()
    with read_only(capture_dir), read_only(tmp_path / "unfinished"):
        resume = run_cli("capture", clip, "-o", tmp_path / "unfinished", "--frames", "0:3")
        reconstruction = run_cli("reconstruct", capture_dir)
    for result, folder in ((resume, tmp_path / "unfinished"), (reconstruction, capture_dir)):
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert f"cannot write {folder}" in result.stderr and "hint:" in result.stderr
