"""Reading ahead of the tracker: every reader gives the same reconstruction, errors and cancels
come through a reader process, and no shared memory is left behind."""
import dataclasses
import multiprocessing
import os
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from model_runtime.capture_folder import CaptureFolder, _read_arrays, frame_path
from model_runtime.errors import Cancelled, CaptureFolderError, UserError
from model_runtime.reconstruct import ReconstructOptions, reading, reconstruct
from model_runtime.reconstruction_format import load_reconstruction
from tests.fixtures.synthetic import SyntheticClip, write_capture

CLIP = SyntheticClip(frame_count=24, no_face=(0, 9, 10), occluded=(15, 16))
SHARED_MEMORY = Path("/dev/shm")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork readers and /dev/shm are Linux's")


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return write_capture(tmp_path_factory.mktemp("reading") / "capture", CLIP)


@pytest.fixture(scope="module")
def threaded(capture):
    return run(capture, "thread")


def run(folder, reader, **kwargs):
    options = ReconstructOptions(density="low")
    return load_reconstruction(reconstruct(folder, options, template=CLIP.template, reader=reader, **kwargs), memory_map=False)


def segments() -> set[str]:
    assert not reading._lingering  # every slot was closed, not only unlinked
    return set(os.listdir(SHARED_MEMORY)) if SHARED_MEMORY.is_dir() else set()


def assert_same(a, b):
    for name in ("vertices", "vertex_confidence", "vertex_filled", "head_pose", "frame_state", "point_positions", "point_visible"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@linux_only
@pytest.mark.parametrize("reader", ["fork", "forkserver", "spawn"])
def test_a_reader_process_gives_the_same_reconstruction_as_a_thread(capture, threaded, reader):
    before = segments()
    assert_same(run(capture, reader), threaded)
    assert segments() == before
    assert not multiprocessing.active_children()


@linux_only
def test_frames_too_big_for_their_slot_come_through_the_pipe(capture, threaded, monkeypatch):
    monkeypatch.setattr(reading, "SLOT_BYTES", 4096)  # smaller than any frame: every slot must grow
    before = segments()
    assert_same(run(capture, "fork"), threaded)
    assert segments() == before


def test_a_slot_grows_after_a_frame_that_did_not_fit(capture, monkeypatch):
    monkeypatch.setattr(reading, "SLOT_BYTES", 4096)
    slots = reading._Slots(1)
    try:
        slot = slots.ready(0)
        direct = reading.indexed_frame(capture, CLIP.size, 3)
        payload, layout, needed = reading._index_into_slot(capture, CLIP.size, 3, 0, slot.name, slot.size)
        assert layout is None and needed > slot.size
        through_pipe = slots.load(slot, payload, layout, needed)
        bigger = slots.ready(0)
        assert bigger.size >= needed and bigger.name != slot.name
        payload, layout, needed = reading._index_into_slot(capture, CLIP.size, 3, 0, bigger.name, bigger.size, with_tree=True)
        assert layout is not None
        through_slot = slots.load(bigger, payload, layout, needed)
        assert through_pipe[1]._tree is None and through_slot[1]._tree is not None  # a reader with time to spare builds it
        queries = CLIP.template.vertices
        for frame in (through_pipe, through_slot):
            np.testing.assert_array_equal(frame[0], direct[0])
            np.testing.assert_array_equal(frame[1].moments, direct[1].moments)
            np.testing.assert_array_equal(frame[1].track(queries, 0.002).positions, direct[1].track(queries, 0.002).positions)
        del frame, through_slot  # its arrays are views of the slot
    finally:
        slots.release()
        for memory in reading._attached.values():
            memory.close()
        reading._attached.clear()


@linux_only
def test_an_unreadable_frame_is_named_from_the_reader_process(tmp_path):
    folder = write_capture(tmp_path / "broken", dataclasses.replace(CLIP, no_face=(), occluded=()))
    frame_path(folder, 7).write_bytes(b"not a frame")
    before = segments()
    with pytest.raises(CaptureFolderError, match="frame 7 of .* cannot be read"):
        run(folder, "fork")
    assert segments() == before
    assert not multiprocessing.active_children()


@linux_only
def test_a_reader_process_that_dies_is_reported(capture, monkeypatch):
    indexed_frame = reading.indexed_frame

    def dying(capture_dir, frame_size, index):  # the forked reader inherits this
        if index == 5:
            os._exit(1)
        return indexed_frame(capture_dir, frame_size, index)

    monkeypatch.setattr(reading, "indexed_frame", dying)
    before = segments()
    with pytest.raises(UserError, match="stopped before frame [345] was ready") as caught:
        run(capture, "fork")
    assert caught.value.code == "reader_stopped" and "out of memory" in caught.value.hint
    assert segments() == before
    assert not multiprocessing.active_children()


@linux_only
def test_a_reader_process_that_never_delivers_gives_way_to_a_thread(capture, threaded, monkeypatch, caplog):
    tracker = os.getpid()
    indexed_frame = reading.indexed_frame

    def dies_in_the_reader(capture_dir, frame_size, index):
        if os.getpid() != tracker:
            os._exit(1)
        return indexed_frame(capture_dir, frame_size, index)

    monkeypatch.setattr(reading, "indexed_frame", dies_in_the_reader)
    before = segments()
    assert_same(run(capture, "fork"), threaded)
    assert "reading frames in a thread" in caplog.text
    assert segments() == before
    assert not multiprocessing.active_children()


@linux_only
def test_cancelling_stops_the_reader_process(capture):
    before = segments()
    polls = iter(range(100))
    with pytest.raises(Cancelled):
        run(capture, "fork", should_cancel=lambda: next(polls) >= 5)
    assert segments() == before
    assert not multiprocessing.active_children()


@linux_only
def test_a_reader_process_only_where_it_pays(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert reading.reader_kind(reading.FORK_MIN_FRAMES - 1) == "thread"
    assert reading.reader_kind(reading.FORK_MIN_FRAMES) == "fork"
    # Another thread (the server's request reader) could hold a lock a forked child needs.
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert reading.reader_kind(reading.LONG_CLIP_FRAMES - 1) == "thread"
    assert reading.reader_kind(reading.LONG_CLIP_FRAMES) == "forkserver"
    monkeypatch.setattr(reading, "_forkserver_started", True)  # as in the runtime server
    assert reading.reader_kind(reading.FORK_MIN_FRAMES) == "forkserver"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert reading.reader_kind(10 * reading.LONG_CLIP_FRAMES) == "thread"


@linux_only
def test_a_threaded_program_with_the_forkserver_started_reads_in_a_process(capture, threaded, monkeypatch):
    monkeypatch.setattr(reading, "_forkserver_started", reading._forkserver_started)  # restored afterwards
    reading.start_forkserver()
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert reading.reader_kind(CLIP.frame_count) == "forkserver"
    assert_same(run(capture, None), threaded)


@linux_only
def test_a_bad_option_found_after_the_reader_started_leaves_nothing_behind(capture):
    before = segments()
    with pytest.raises(UserError, match="frame 999"):  # a point picked on a frame the capture lacks
        reconstruct(capture, ReconstructOptions(points="pixel:999:10:10"), template=CLIP.template, reader="fork")
    assert segments() == before
    assert not multiprocessing.active_children()


def test_frame_files_read_as_numpy_writes_them_and_damage_is_named(tmp_path):
    folder = write_capture(tmp_path / "damaged", dataclasses.replace(CLIP, frame_count=3, no_face=(), occluded=()))
    path = frame_path(folder, 1)
    with np.load(path) as written:
        for name, array in _read_arrays(path, optional=True).items():
            np.testing.assert_array_equal(array, written[name])
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("canonical.npy")
    data = bytearray(path.read_bytes())
    data[member.header_offset + 30 + len(member.filename) + member.compress_size // 2] ^= 0xFF  # inside its deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureFolderError, match="frame 1 of .* cannot be read"):
        CaptureFolder(folder).frame(1)
