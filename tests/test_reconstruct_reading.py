"""Reading ahead of the tracker, and what a reconstruction leaves behind: the read-ahead thread
gives the same reconstruction as reading inline, damaged frames are named, cancelling and errors
stop the thread, and the work folder of a killed run is removed by the next run."""
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from model_runtime.capture_folder import CaptureFolder, frame_path, try_lock
from model_runtime.errors import Cancelled, CaptureFolderError, UserError
from model_runtime.reconstruct import ReconstructOptions, pipeline, reading, reconstruct
from model_runtime.reconstruction_format import load_reconstruction, reconstruction_dir
from tests.fixtures.synthetic import SyntheticClip, write_capture

CLIP = SyntheticClip(frame_count=24, no_face=(0, 9, 10), occluded=(15, 16))
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return write_capture(tmp_path_factory.mktemp("reading") / "capture", CLIP)


def run(folder, **kwargs):
    reconstructed = reconstruct(folder, ReconstructOptions(density="low"), template=CLIP.template, **kwargs)
    return load_reconstruction(reconstructed, memory_map=False)


def reading_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("read-frames")]


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob(".reconstruction.*"))


def assert_same(a, b):
    for name in ("vertices", "vertex_confidence", "vertex_filled", "head_pose", "frame_state", "point_positions", "point_visible"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


class InlineReader:
    """`reading.FrameReader` without the thread: each frame read when the tracker asks for it."""

    def __init__(self, capture: CaptureFolder):
        self.capture = capture

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass

    def __iter__(self):
        return (reading.indexed_frame(self.capture, index) for index in range(self.capture.frame_count))


def test_reading_ahead_gives_the_same_reconstruction_as_reading_inline(capture, monkeypatch):
    ahead = run(capture)
    assert not reading_threads() and not leftovers(capture)
    monkeypatch.setattr(pipeline, "FrameReader", InlineReader)
    assert_same(ahead, run(capture))


def test_the_reader_hands_over_every_frame_in_order_and_stops(capture):
    folder = CaptureFolder(capture)
    with reading.FrameReader(folder) as frames:
        assert reading_threads()
        read = list(frames)
    assert not reading_threads()
    assert len(read) == CLIP.frame_count
    for index in (0, 3, 23):  # 0 has no face
        intrinsics, lookup = reading.indexed_frame(folder, index)
        np.testing.assert_array_equal(read[index][0], intrinsics)
        assert (read[index][1] is None) == (lookup is None) == (index in CLIP.no_face)
        if lookup is not None:
            np.testing.assert_array_equal(read[index][1].moments, lookup.moments)


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated"])
def test_an_unreadable_frame_file_is_named(tmp_path, damage):
    folder = write_capture(tmp_path / "broken", dataclasses.replace(CLIP, no_face=(), occluded=()))
    path = frame_path(folder, 7)
    written = path.read_bytes()
    path.write_bytes({"garbage": b"not a frame", "empty": b"", "truncated": written[: len(written) // 2]}[damage])
    with pytest.raises(CaptureFolderError, match="frame 7 of .* cannot be read") as caught:
        run(folder)
    assert "000007.npz" in caught.value.message and "Delete that frame file" in caught.value.hint
    assert not reading_threads() and not leftovers(folder)


def test_damage_anywhere_in_a_frame_member_is_named(tmp_path):
    folder = write_capture(tmp_path / "damaged", dataclasses.replace(CLIP, frame_count=2, no_face=(), occluded=()))
    path = frame_path(folder, 1)
    written = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("canonical.npy")
    # Where the member's deflate stream starts: after its local header, name and extra field.
    name_length, extra_length = np.frombuffer(written, "<u2", 2, member.header_offset + 26)
    start = member.header_offset + 30 + int(name_length) + int(extra_length)
    # Near the start (the array's header: numpy's parser must not see it damaged) and all through
    # the rest; the stream's last bytes are left alone (padding there may change nothing).
    for offset in [0, 1, 2, 4, 8, 16, 32, 64, *np.linspace(128, 0.9 * member.compress_size, 8).astype(int)]:
        damaged = bytearray(written)
        damaged[start + offset] ^= 0x55
        path.write_bytes(bytes(damaged))
        with pytest.raises(CaptureFolderError, match="frame 1 of .* cannot be read"):
            CaptureFolder(folder).frame(1)


def test_cancelling_stops_the_reader_and_keeps_the_previous_reconstruction(capture):
    before = run(capture)
    polls = iter(range(100))
    with pytest.raises(Cancelled):
        run(capture, should_cancel=lambda: next(polls) >= 5)
    assert not reading_threads() and not leftovers(capture)
    assert_same(load_reconstruction(reconstruction_dir(capture), memory_map=False), before)


def test_a_bad_option_found_after_the_reader_started_leaves_nothing_behind(capture):
    with pytest.raises(UserError, match="frame 999"):  # a point picked on a frame the capture lacks
        reconstruct(capture, ReconstructOptions(points="pixel:999:10:10"), template=CLIP.template)
    assert not reading_threads() and not leftovers(capture)


def test_the_next_run_removes_what_killed_runs_left_but_not_a_running_ones(capture):
    stale = capture / ".reconstruction.partial-stale"  # its run was killed: its lock is free
    stale.mkdir()
    (capture / ".reconstruction.partial-stale.lock").touch()
    unlocked = capture / ".reconstruction.partial-old"  # from a version without locks
    unlocked.mkdir()
    moved_aside = capture / ".reconstruction.old-x" / "reconstruction"  # killed while swapping folders in
    moved_aside.mkdir(parents=True)
    running = capture / ".reconstruction.partial-running"
    running.mkdir()
    with open(capture / ".reconstruction.partial-running.lock", "a+b") as lock:
        assert try_lock(lock)  # as the running reconstruction holds it
        run(capture)
        assert leftovers(capture) == [".reconstruction.partial-running", ".reconstruction.partial-running.lock"]
    run(capture)  # the lock is free now: that run is over
    assert leftovers(capture) == []


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="lists a process's children through Linux's /proc")
def test_a_killed_reconstruct_leaves_nothing_running_and_the_next_run_cleans_up(tmp_path):
    folder = write_capture(tmp_path / "capture", dataclasses.replace(CLIP, frame_count=48))
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "model_runtime", "reconstruct", str(folder), "--mesh", "dense", "--density", "high"]
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while not list(folder.glob(".reconstruction.partial-*")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert process.poll() is None, f"the reconstruction ended before it could be killed: {log.read_text()}"
        assert children(process.pid) == []  # nothing that could outlive it: the read-ahead is a thread
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        process.kill()
        process.wait()
    assert any(path.is_dir() for path in folder.glob(".reconstruction.partial-*")), "killed after it finished"
    assert not (folder / "reconstruction").exists()
    reconstruct(folder, ReconstructOptions(mesh="dense"))
    assert leftovers(folder) == [] and (folder / "reconstruction" / "vertices.npy").is_file()


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
