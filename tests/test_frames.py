"""Frame sources over real files: videos encoded here with PyAV, images written with OpenCV,
and the GRID clips from ../shared."""
from __future__ import annotations

import dataclasses
import shutil
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import GRID
from model_runtime.errors import InputError
from model_runtime.errors import UserError
from model_runtime.frame_numbers import footage_frame_numbers, select_frames
from model_runtime.frames import open_source, read_image
from model_runtime.option_schema import parse_frames

import cv2  # after model_runtime.frames, which switches on OpenCV's EXR codec

GRID_CLIPS = sorted(GRID.glob("*.mpg"))
needs_grid = pytest.mark.skipif(not GRID_CLIPS, reason=f"GRID clips not found in {GRID}")

WIDTH, HEIGHT = 64, 48
BITS = 7  # frame numbers up to 127 are drawn into the picture


def numbered_picture(number: int) -> np.ndarray:
    """An RGB picture that carries `number` as a row of black/white blocks, readable after lossy coding."""
    image = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
    for bit in range(BITS):
        if number >> bit & 1:
            image[8:24, bit * 8:bit * 8 + 8] = 255
    image[30:, :] = (number * 37) % 256  # changes every frame, so inter-coded frames differ
    return image


def read_number(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(BITS) if image[12:20, bit * 8 + 2:bit * 8 + 6].mean() > 128)


def write_video(path: Path, codec: str = "mpeg4", count: int = 40, fmt: str | None = None, gop: int = 10,
                b_frames: int | None = None, pictures=None, pts_ms: list[int] | None = None,
                rotation: float | None = None) -> Path:
    """Encode `count` numbered pictures (or `pictures`) at 25 fps, or at `pts_ms` milliseconds."""
    pictures = pictures if pictures is not None else [numbered_picture(i) for i in range(count)]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width = pictures[0].shape[:2]
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.codec_context.gop_size = gop
        if b_frames is not None:
            stream.codec_context.max_b_frames = b_frames
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, picture in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def can_encode(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def packet_spans(path: Path) -> list[tuple[int, int]]:
    """(byte position, size) of every video packet in decode order."""
    with av.open(str(path)) as container:
        return [(packet.pos, packet.size) for packet in container.demux(video=0) if packet.size]


def write_image(path: Path, image: np.ndarray) -> Path:
    """Write with imencode + tofile, which, unlike imwrite, works on any path."""
    ok, data = cv2.imencode(path.suffix, image)
    assert ok, path
    data.tofile(path)
    return path


# --- videos -----------------------------------------------------------------------------------------

CONTAINERS = [
    pytest.param("mp4", "mpeg4", "mp4", 2, id="mp4-mpeg4-bframes"),
    pytest.param("mov", "mpeg4", "mov", None, id="mov-mpeg4"),
    pytest.param("avi", "mjpeg", "avi", None, id="avi-mjpeg"),
    pytest.param("mkv", "libx264", "matroska", None, id="mkv-h264"),
    pytest.param("webm", "libvpx", "webm", None, id="webm-vp8"),
    pytest.param("mpg", "mpeg1video", "mpeg", 2, id="mpg-mpeg1-bframes"),
]


@pytest.mark.parametrize("extension, codec, fmt, b_frames", CONTAINERS)
def test_every_frame_comes_with_its_own_index(tmp_path, extension, codec, fmt, b_frames):
    if not can_encode(codec):
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    path = write_video(tmp_path / f"clip.{extension}", codec, count=40, fmt=fmt, b_frames=b_frames)
    with open_source(path) as source:
        info = source.info
        assert (info.kind, info.width, info.height, info.frame_count, info.rotation) == ("video", 64, 48, 40, 0)
        assert info.fps == pytest.approx(25.0)
        assert source.timestamps() == pytest.approx([i / 25 for i in range(40)])
        frames = list(source.frames())
    assert [frame.index for frame in frames] == list(range(40))
    assert [read_number(frame.image) for frame in frames] == list(range(40))
    assert [frame.timestamp for frame in frames] == pytest.approx([i / 25 for i in range(40)])
    image = frames[5].image
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8 and image.flags.c_contiguous


@pytest.mark.parametrize("extension, codec, fmt, b_frames", CONTAINERS)
def test_a_range_in_the_middle_has_exact_indices(tmp_path, extension, codec, fmt, b_frames):
    """Starts past several keyframes, so containers that can seek do."""
    if not can_encode(codec):
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    path = write_video(tmp_path / f"clip.{extension}", codec, count=60, fmt=fmt, gop=8, b_frames=b_frames)
    with open_source(path) as source:
        for start, stop, step in [(37, None, 1), (33, 50, 4), (8, 9, 1), (59, None, 1)]:
            frames = list(source.frames(start, stop, step))
            expected = list(range(start, stop or 60, step))
            assert [frame.index for frame in frames] == expected
            assert [read_number(frame.image) for frame in frames] == expected, (start, stop, step)


def test_a_seek_that_overshoots_falls_back_to_decoding_from_the_start(tmp_path):
    """MPEG streams and badly indexed files can land a seek past the asked frame. Simulated by
    pointing the last keyframe before frame 20 at the timestamp of frame 35."""
    path = write_video(tmp_path / "clip.mp4", "mpeg4", count=40, gop=8)
    with open_source(path) as source:
        index = source._index
        time_of = {frame: pts for pts, frame in index.pts_to_index.items()}
        before = max(frame for frame, _ in index.keyframes if frame <= 20)
        assert before > 0, "the test needs a keyframe to seek to"
        keyframes = [(frame, time_of[35] if frame == before else seek) for frame, seek in index.keyframes]
        source._index = dataclasses.replace(index, keyframes=keyframes)
        frames = list(source.frames(20, 30, 3))
    assert [frame.index for frame in frames] == [20, 23, 26, 29]
    assert [read_number(frame.image) for frame in frames] == [20, 23, 26, 29]


def test_variable_frame_rate_keeps_real_times(tmp_path):
    times_ms = [0, 40, 100, 120, 200, 330, 340, 500]
    path = write_video(tmp_path / "vfr.mkv", "mpeg4", count=len(times_ms), fmt="matroska", pts_ms=times_ms)
    with open_source(path) as source:
        assert source.info.frame_count == len(times_ms)
        assert source.timestamps() == pytest.approx([t / 1000 for t in times_ms])
        frames = list(source.frames())
        later = list(source.frames(start=4))
    assert [frame.timestamp for frame in frames] == pytest.approx([t / 1000 for t in times_ms])
    assert [read_number(frame.image) for frame in frames] == list(range(len(times_ms)))
    assert [(frame.index, frame.timestamp) for frame in later] == [(4, 0.2), (5, 0.33), (6, 0.34), (7, 0.5)]


def corner_picture() -> np.ndarray:
    """64x32 picture, bright only in its top-left 16x16 corner."""
    image = np.zeros((32, 64, 3), np.uint8)
    image[:16, :16] = 255
    return image


def bright_corner(image: np.ndarray) -> str:
    height, width = image.shape[:2]
    top = "top" if image[: height // 2].mean() > image[height // 2:].mean() else "bottom"
    left = "left" if image[:, : width // 2].mean() > image[:, width // 2:].mean() else "right"
    return f"{top}-{left}"


@pytest.mark.parametrize(
    "rotation, applied, corner",
    [(90, 90, "bottom-left"), (-90, 270, "top-right"), (180, 180, "bottom-right")],
)
def test_rotation_metadata_makes_frames_upright(tmp_path, rotation, applied, corner):
    """The display matrix says turn counter-clockwise by `rotation`; a phone's portrait clip
    (tag rotate=90, clockwise) is the -90 case."""
    pictures = [corner_picture()] * 5
    path = write_video(tmp_path / "turned.mp4", "mpeg4", pictures=pictures, rotation=rotation)
    with open_source(path) as source:
        assert source.info.rotation == applied
        size = (32, 64) if applied in (90, 270) else (64, 32)
        assert (source.info.width, source.info.height) == size
        frames = list(source.frames(2))
    image = frames[0].image
    assert image.shape == (size[1], size[0], 3) and image.flags.c_contiguous
    assert bright_corner(image) == corner


def test_a_corrupt_frame_is_reported_and_the_rest_still_come(tmp_path):
    path = write_video(tmp_path / "damaged.avi", "mjpeg", count=20)
    position, size = packet_spans(path)[7]
    data = bytearray(path.read_bytes())
    garbage = np.random.default_rng(0).integers(0, 256, size - size // 4, dtype=np.uint8)
    data[position + size // 4: position + size] = garbage.tobytes()
    path.write_bytes(bytes(data))
    with open_source(path) as source:
        frames = list(source.frames())
    assert [frame.index for frame in frames] == list(range(20))
    broken = [frame for frame in frames if frame.image is None]
    assert [frame.index for frame in broken] == [7]
    assert "frame 8" in broken[0].error and "damaged.avi" in broken[0].error  # footage frame numbers count from 1
    assert broken[0].timestamp == pytest.approx(7 / 25)
    assert [read_number(frame.image) for frame in frames if frame.image is not None] == [
        i for i in range(20) if i != 7
    ]


@needs_grid
def test_truncated_clip_streams_what_it_holds(tmp_path):
    path = tmp_path / "cut.mpg"
    data = GRID_CLIPS[0].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with open_source(path) as source:
        count = source.info.frame_count
        frames = list(source.frames())
    assert 20 < count < 75
    assert [frame.index for frame in frames] == list(range(count))
    assert all(frame.image is not None for frame in frames[:-1])


def test_truncated_mkv_keeps_its_whole_frames(tmp_path):
    path = write_video(tmp_path / "cut.mkv", "mpeg4", count=40, fmt="matroska")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with open_source(path) as source:
        count = source.info.frame_count
        frames = list(source.frames())
    assert 10 < count < 40
    assert [frame.index for frame in frames] == list(range(count))
    decoded = [frame for frame in frames if frame.image is not None]
    assert len(decoded) >= count - 1
    assert all(read_number(frame.image) == frame.index for frame in decoded)


def test_a_text_file_named_mp4_is_refused(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(InputError, match="notes.mp4") as raised:
        open_source(path)
    assert raised.value.hint


def test_a_video_stream_without_frames_is_refused(tmp_path):
    path = tmp_path / "silent.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=8000)
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        sound.sample_rate = 8000
        container.mux(audio.encode(sound))
        container.mux(audio.encode())
    with pytest.raises(InputError, match="silent.mkv has no video frames"):
        open_source(path)


def test_an_unknown_codec_is_refused(tmp_path):
    path = write_video(tmp_path / "odd.avi", "mpeg4", count=5, fmt="avi")
    data = path.read_bytes()
    assert data.count(b"FMP4") == 2  # the codec tag, in the stream header and the format header
    path.write_bytes(data.replace(b"FMP4", b"QQQQ"))
    with pytest.raises(InputError, match="odd.avi uses a video codec"):
        open_source(path)


@needs_grid
def test_grid_clip(tmp_path):
    with open_source(GRID_CLIPS[0]) as source:
        info = source.info
        assert (info.kind, info.width, info.height, info.frame_count) == ("video", 360, 288, 75)
        assert info.fps == pytest.approx(25.0)
        assert source.timestamps() == pytest.approx([i * 0.04 for i in range(75)])
        every = list(source.frames())
        some = list(source.frames(10, 20, 3))
    assert all(frame.image.shape == (288, 360, 3) and frame.error is None for frame in every)
    assert [frame.index for frame in some] == [10, 13, 16, 19]
    for frame in some:
        np.testing.assert_array_equal(frame.image, every[frame.index].image)
    assert not np.array_equal(every[10].image, every[13].image)


# --- images -----------------------------------------------------------------------------------------

def test_folder_frames_come_in_natural_order(tmp_path):
    for number in [10, 2, 1, 33, 3]:
        write_image(tmp_path / f"f{number}.png", numbered_picture(number)[..., ::-1])
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / ".f0.png").write_bytes(b"hidden resource fork")
    with open_source(tmp_path, fps_for_images=10) as source:
        info = source.info
        assert (info.kind, info.width, info.height, info.frame_count, info.fps) == ("images", 64, 48, 5, 10.0)
        assert source.timestamps() == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
        frames = list(source.frames())
        tail = list(source.frames(3))
    assert [read_number(frame.image) for frame in frames] == [1, 2, 3, 10, 33]
    assert [(frame.index, read_number(frame.image)) for frame in tail] == [(3, 10), (4, 33)]


def test_image_formats_become_8_bit_rgb(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 30
    bgr = rgb[..., ::-1]
    write_image(tmp_path / "plain.png", bgr)
    write_image(tmp_path / "alpha.png", np.dstack([bgr, np.full((6, 8), 7, np.uint8)]))
    write_image(tmp_path / "gray.png", np.full((6, 8), 90, np.uint8))
    write_image(tmp_path / "deep.png", bgr.astype(np.uint16) * 257)
    write_image(tmp_path / "deep gray.tif", np.full((6, 8), 90 * 257, np.uint16))
    write_image(tmp_path / "photo.bmp", bgr)
    for name in ["plain.png", "alpha.png", "deep.png", "photo.bmp"]:
        np.testing.assert_array_equal(read_image(tmp_path / name), rgb, err_msg=name)
    for name in ["gray.png", "deep gray.tif"]:
        np.testing.assert_array_equal(read_image(tmp_path / name), np.full((6, 8, 3), 90, np.uint8), err_msg=name)
    image = read_image(tmp_path / "alpha.png")
    assert image.shape == (6, 8, 3) and image.dtype == np.uint8 and image.flags.c_contiguous


def test_lossy_formats_read(tmp_path):
    bgr = np.full((16, 16, 3), (30, 100, 200), np.uint8)
    for name in ["photo.jpg", "photo.jpeg", "photo.webp"]:
        image = read_image(write_image(tmp_path / name, bgr))
        assert image.shape == (16, 16, 3)
        assert np.abs(image.astype(int) - [200, 100, 30]).max() <= 4, name


def test_exr_is_linear_light_given_the_srgb_curve(tmp_path):
    linear = np.zeros((4, 4, 3), np.float32)
    linear[..., 2] = 1.0  # red in BGR order
    linear[..., 1] = 0.5
    linear[..., 0] = 4.0  # over-bright blue clips to white
    write_image(tmp_path / "render.exr", linear)
    image = read_image(tmp_path / "render.exr")
    assert image[0, 0].tolist() == [255, 188, 255]  # sRGB(0.5) = 0.7354 -> 188


def test_exif_orientation_is_applied(tmp_path):
    """A camera JPEG stored sideways with EXIF orientation 6 (turn 90 degrees clockwise to view)."""
    ok, jpeg = cv2.imencode(".jpg", corner_picture())
    assert ok
    exif = b"Exif\0\0" + b"MM\0\x2a" + struct.pack(">IHHHIHHI", 8, 1, 0x0112, 3, 1, 6, 0, 0)
    app1 = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    path = tmp_path / "phone.jpg"
    path.write_bytes(jpeg.tobytes()[:2] + app1 + jpeg.tobytes()[2:])
    with open_source(path) as source:
        assert (source.info.kind, source.info.width, source.info.height, source.info.frame_count) == (
            "image", 32, 64, 1)
        [frame] = list(source.frames())
    assert bright_corner(frame.image) == "top-right"


def test_images_of_another_size_stop_the_sequence(tmp_path):
    for number in range(3):
        write_image(tmp_path / f"frame_{number:03d}.png", numbered_picture(number))
    write_image(tmp_path / "frame_003.png", np.zeros((20, 30, 3), np.uint8))
    with open_source(tmp_path) as source:
        frames = source.frames()
        assert [next(frames).index for _ in range(3)] == [0, 1, 2]
        with pytest.raises(InputError) as raised:
            next(frames)
    message = str(raised.value)
    assert "frame_003.png is 30x20" in message and "frame_000.png is 64x48" in message


def test_an_unreadable_image_is_reported_and_the_rest_still_come(tmp_path):
    (tmp_path / "f1.png").write_bytes(b"\x89PNG broken")
    write_image(tmp_path / "f2.png", numbered_picture(2))
    (tmp_path / "f3.png").write_bytes(b"")
    write_image(tmp_path / "f4.png", numbered_picture(4))
    with open_source(tmp_path) as source:
        assert (source.info.width, source.info.height, source.info.frame_count) == (64, 48, 4)
        frames = list(source.frames())
    assert [frame.index for frame in frames] == [0, 1, 2, 3]
    assert frames[0].image is None and "f1.png" in frames[0].error
    assert frames[2].image is None and "f3.png is empty" in frames[2].error
    assert [read_number(frame.image) for frame in frames if frame.image is not None] == [2, 4]


def test_a_folder_without_images_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("no frames here")
    with pytest.raises(InputError, match="holds no images") as raised:
        open_source(tmp_path)
    assert str(tmp_path) in raised.value.message


def test_a_folder_of_broken_images_is_refused(tmp_path):
    for name in ["a.png", "b.jpg"]:
        (tmp_path / name).write_bytes(b"rubbish")
    with pytest.raises(InputError, match="none of the 2 images"):
        open_source(tmp_path)


# --- paths, ranges, identity ------------------------------------------------------------------------

def test_missing_path_is_refused(tmp_path):
    with pytest.raises(InputError, match="does not exist") as raised:
        open_source(tmp_path / "nowhere.mp4")
    assert "nowhere.mp4" in raised.value.message


def test_unknown_file_type_is_refused(tmp_path):
    path = tmp_path / "clip.xyz"
    path.write_bytes(b"something")
    with pytest.raises(InputError, match=r"clip.xyz is not a file type"):
        open_source(path)


def test_non_ascii_paths_with_spaces_work(tmp_path):
    folder = tmp_path / "Ünïcødé footage ✓ 日本"
    folder.mkdir()
    video = write_video(folder / "my clip é.mp4", "mpeg4", count=6)
    with open_source(video) as source:
        assert [read_number(frame.image) for frame in source.frames()] == list(range(6))
        assert len(source.info.fingerprint()) == 64
    images = folder / "frames ß"
    images.mkdir()
    for number in range(3):
        write_image(images / f"frame {number}.png", numbered_picture(number))
    with open_source(images) as source:
        assert [read_number(frame.image) for frame in source.frames()] == [0, 1, 2]
    with open_source(images / "frame 1.png") as source:
        assert read_number(next(source.frames()).image) == 1


def test_a_range_outside_the_source_is_refused(tmp_path):
    path = write_video(tmp_path / "short.mp4", "mpeg4", count=10)
    with open_source(path) as source:
        for start, stop, step in [(10, None, 1), (0, 11, 1), (5, 5, 1), (-1, None, 1), (0, None, 0)]:
            with pytest.raises(InputError) as raised:
                source.frames(start, stop, step)
            assert raised.value.hint, (start, stop, step)
        with pytest.raises(InputError, match="short.mp4, which has 10 frames"):
            source.frames(12)


@pytest.mark.parametrize(
    "text, expected",
    [("3:9", (3, 9, 1)), ("3:9:2", (3, 9, 2)), ("5:", (5, None, 1)), (":7", (None, 7, 1)), ("::4", (None, None, 4)),
     (" 0 : 10 ", (0, 10, 1)), ("4:4", (4, 4, 1))],
)
def test_parse_frames_reads_inclusive_footage_numbers(text, expected):
    assert parse_frames(text) == expected


@pytest.mark.parametrize("text", ["7", "a:b", "-1:5", "5:3", "0:10:0", "1:2:3:4", ""])
def test_parse_frames_refuses_nonsense(text):
    with pytest.raises(UserError) as raised:
        parse_frames(text)
    assert "FIRST:LAST" in raised.value.hint


def test_footage_frame_numbers_are_the_file_numbers_of_a_sequence_else_positions_from_one():
    assert footage_frame_numbers(3, ["plate.1001", "plate.1002", "plate.1004"]) == [1001, 1002, 1004]
    assert footage_frame_numbers(2, ["shot_v2_0009", "shot_v2_0010"]) == [9, 10]
    assert footage_frame_numbers(2, ["front", "side"]) == [1, 2]
    assert footage_frame_numbers(2, ["b7", "a3"]) == [1, 2]  # not increasing: positions
    assert footage_frame_numbers(4) == [1, 2, 3, 4]
    assert select_frames([1001, 1002, 1004, 1005], 1002, None, 1) == [1, 2, 3]
    assert select_frames([1, 2, 3, 4, 5, 6], 2, 6, 2) == [1, 3, 5]


def test_an_image_sequence_is_numbered_by_its_files(tmp_path):
    for number in (7, 8, 10):
        write_image(tmp_path / f"shot.{number:04d}.png", numbered_picture(number))
    with open_source(tmp_path) as source:
        assert source.info.frame_numbers == (7, 8, 10)
        assert [read_number(frame.image) for frame in source.frames()] == [7, 8, 10]


def test_fingerprint_follows_the_footage(tmp_path):
    path = write_video(tmp_path / "clip.mp4", "mpeg4", count=8)
    with open_source(path) as source:
        first = source.info.fingerprint()
        assert source.info.fingerprint() == first
    copy = shutil.copy2(path, tmp_path / "copy.mp4")
    with open_source(copy) as source:
        assert source.info.fingerprint() == first  # same bytes, size and mtime: same footage
    write_video(path, "mpeg4", count=9)
    with open_source(path) as source:
        assert source.info.fingerprint() != first

    folder = tmp_path / "frames"
    folder.mkdir()
    write_image(folder / "a1.png", numbered_picture(1))
    with open_source(folder) as source:
        before = source.info.fingerprint()
        write_image(folder / "a2.png", numbered_picture(2))
        assert source.info.fingerprint() != before


def test_close_stops_running_iterators(tmp_path):
    path = write_video(tmp_path / "clip.mkv", "mpeg4", count=20, fmt="matroska")
    source = open_source(path)
    frames = source.frames()
    assert next(frames).index == 0
    source.close()
    assert next(frames, None) is None
    with pytest.raises(ValueError, match="closed"):
        source.frames()

