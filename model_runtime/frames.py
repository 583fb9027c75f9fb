"""Frame sources: one interface over a video file, a folder of images and a single image.

Frames are streamed one at a time as (H, W, 3) uint8 RGB arrays, upright (video rotation
metadata and JPEG EXIF orientation are applied), with their index in the source and their
time in seconds from the source start. A frame that cannot be decoded does not stop the
stream: it comes as a `Frame` whose ``image`` is None and whose ``error`` says why, so a
caller can record a warning for it and carry on.

Video frame indices are exact. Each frame's index comes from its presentation timestamp,
looked up in an index of every packet built when the source opens (demuxing only, no
decoding), so a frame the decoder drops shows up as a gap that is reported, and seeking
cannot shift indices. MPEG program streams (.mpg) carry timestamps that FFmpeg cannot always
pair with the right picture, so those are decoded from the start and counted instead.
"""
from __future__ import annotations

import hashlib
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from .errors import InputError
from .frame_numbers import footage_frame_numbers

# OpenCV reads this switch when it first decodes an EXR, so setting it here is early enough.
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".mpg", ".mpeg", ".webm"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".bmp", ".webp"})

# Containers whose packet timestamps cannot be trusted to identify frames (see module docstring).
_COUNTED_FORMATS = frozenset({"mpeg", "mpegvideo"})
# Flags that keep bit depth and EXIF orientation but return gray or 3-channel BGR (alpha dropped).
_IMREAD_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
_FINGERPRINT_CHUNK = 1 << 20
_VIDEO_HINT = "Check that it is a complete video file; re-export it as H.264 MP4 if it still fails."


@dataclass(frozen=True)
class SourceInfo:
    """What a source holds. ``width``/``height`` are of the upright frames (after rotation)."""

    path: str
    kind: str  # "video" | "images" | "image"
    width: int
    height: int
    frame_count: int
    fps: float  # video: nominal average rate; images: the rate given to `open_source`
    rotation: int  # degrees counter-clockwise applied to decoded video frames: 0, 90, 180 or 270
    frame_numbers: tuple[int, ...]  # the footage's own number of each frame (frame_numbers.py)

    def fingerprint(self) -> str:
        """A cheap id that changes when the footage changes: size, mtime and the first and last
        MiB of a file, or the names, sizes and mtimes of a folder's images."""
        digest = hashlib.sha256()
        path = Path(self.path)
        if path.is_dir():
            for file in list_images(path):
                stat = file.stat()
                digest.update(f"{file.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            return digest.hexdigest()
        stat = path.stat()
        digest.update(f"{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        with open(path, "rb") as file:
            digest.update(file.read(_FINGERPRINT_CHUNK))
            if stat.st_size > _FINGERPRINT_CHUNK:
                file.seek(max(stat.st_size - _FINGERPRINT_CHUNK, _FINGERPRINT_CHUNK))
                digest.update(file.read())
        return digest.hexdigest()


@dataclass(frozen=True)
class Frame:
    """One source frame: ``image`` is (H, W, 3) uint8 RGB, or None with ``error`` saying why."""

    index: int
    timestamp: float
    image: np.ndarray | None
    error: str | None = None


class FrameSource:
    """Frames of one source, streamed in order. Open with `open_source`; use as a context manager."""

    def __init__(self, info: SourceInfo, timestamps: list[float]):
        self.info = info
        self._timestamps = timestamps
        self._running: weakref.WeakSet = weakref.WeakSet()
        self._closed = False

    def frames(self, start: int = 0, stop: int | None = None, step: int = 1) -> Iterator[Frame]:
        """Frames ``start``, ``start + step``, ... before ``stop`` (None: the end), decoded lazily."""
        if self._closed:
            raise ValueError(f"{self.info.path} is closed")
        stop = self.info.frame_count if stop is None else stop
        self._check_range(start, stop, step)
        iterator = self._generate(range(start, stop, step))
        self._running.add(iterator)
        return iterator

    def timestamps(self) -> list[float]:
        """Seconds from the source start of every source frame, without decoding any image."""
        return list(self._timestamps)

    def close(self) -> None:
        """Stop every running `frames` iterator and release its file."""
        self._closed = True
        for iterator in list(self._running):
            iterator.close()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _check_range(self, start: int, stop: int, step: int) -> None:
        count = self.info.frame_count
        if step < 1:
            raise InputError(f"frame step {step} must be 1 or more", "Give a positive step, e.g. 0:100:2.")
        if not (0 <= start < stop <= count):
            raise InputError(
                f"frame range {start}:{stop} is outside {self.info.path}, which has {count} frames (0 to {count - 1})",
                f"Give a range within 0:{count}, with the start before the stop.",
            )

    def _generate(self, wanted: range) -> Iterator[Frame]:
        raise NotImplementedError

    def _missing(self, index: int, reason: str) -> Frame:
        number = self.info.frame_numbers[index]
        return Frame(index, self._timestamps[index], None, f"frame {number} of {self.info.path}: {reason}")


def open_source(path: str | os.PathLike, fps_for_images: float = 25.0) -> FrameSource:
    """Open a video file, a folder of images or one image. Raises InputError for footage that
    cannot be read; ``fps_for_images`` sets the timestamps of image frames."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist", "Check the path; give a video file, an image or a folder of images.")
    if path.is_dir():
        return ImageSource(path, list_images(path), "images", fps_for_images)
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return ImageSource(path, [path], "image", fps_for_images)
    if suffix in VIDEO_EXTENSIONS:
        return VideoSource(path)
    raise InputError(
        f"{path} is not a file type this runtime reads ({suffix or 'no extension'})",
        f"Give a video ({', '.join(sorted(VIDEO_EXTENSIONS))}), an image or a folder of images "
        f"({', '.join(sorted(IMAGE_EXTENSIONS))}).",
    )


def list_images(folder: Path) -> list[Path]:
    """The image files of a folder in natural order (``f2`` before ``f10``), hidden files left out."""
    files = [
        entry
        for entry in folder.iterdir()
        if entry.suffix.lower() in IMAGE_EXTENSIONS and not entry.name.startswith(".") and entry.is_file()
    ]
    return sorted(files, key=_natural_key)


def _natural_key(path: Path) -> list:
    # re.split with a capture group alternates text and digits, so keys compare str to str, int to int.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name.lower())]


class ImageSource(FrameSource):
    """A folder of images, or a single image (a one-frame sequence)."""

    def __init__(self, path: Path, files: list[Path], kind: str, fps: float):
        if not files:
            raise InputError(
                f"folder {path} holds no images",
                f"Put the frames in it as numbered images ({', '.join(sorted(IMAGE_EXTENSIONS))}), "
                "or give a video file.",
            )
        if fps <= 0:
            raise InputError(f"frame rate {fps} for images of {path} must be positive", "Give a rate like 25 or 30.")
        self._files = files
        self._reference, first_image = _first_readable(files)
        height, width = first_image.shape[:2]
        numbers = tuple(footage_frame_numbers(len(files), [file.stem for file in files]))
        info = SourceInfo(str(path), kind, width, height, len(files), float(fps), 0, numbers)
        super().__init__(info, [index / fps for index in range(len(files))])

    def _generate(self, wanted: range) -> Iterator[Frame]:
        for index in wanted:
            try:
                image = read_image(self._files[index])
            except InputError as error:
                yield Frame(index, self._timestamps[index], None, f"frame {self.info.frame_numbers[index]}: {error.message}")
                continue
            self._check_size(self._files[index], image)
            yield Frame(index, self._timestamps[index], image)

    def _check_size(self, file: Path, image: np.ndarray) -> None:
        height, width = image.shape[:2]
        if (width, height) != (self.info.width, self.info.height):
            raise InputError(
                f"{file} is {width}x{height} but {self._reference} is {self.info.width}x{self.info.height}",
                f"Every image of a sequence must have the same size; resize or remove {file.name}.",
            )


def _first_readable(files: list[Path]) -> tuple[Path, np.ndarray]:
    """The first image that decodes (its size is the sequence's); unreadable ones are reported
    later as frame errors, unless none can be read."""
    first_error = None
    for file in files:
        try:
            return file, read_image(file)
        except InputError as error:
            first_error = first_error or error
    if len(files) == 1:
        raise first_error
    raise InputError(f"none of the {len(files)} images in {files[0].parent} can be read; {first_error.message}",
                     first_error.hint)


def read_image(path: Path) -> np.ndarray:
    """An image file as upright (H, W, 3) uint8 RGB. Reads the bytes with numpy so that paths
    OpenCV cannot open (non-ASCII on some platforms) work too."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}", "Check that the file is readable.") from None
    if data.size == 0:
        raise InputError(f"{path} is empty (0 bytes)", "Export the image again or remove it.")
    try:
        image = cv2.imdecode(data, _IMREAD_FLAGS)
    except cv2.error as error:
        raise InputError(f"cannot decode {path}: {error.err}", _decode_hint(path)) from None
    if image is None:
        raise InputError(f"cannot decode {path}: the file is damaged or not an image OpenCV reads", _decode_hint(path))
    return _to_rgb8(image, path)


def _decode_hint(path: Path) -> str:
    if path.suffix.lower() == ".exr":
        return ("OpenCV reads EXR only when OPENCV_IO_ENABLE_OPENEXR=1 is set in the environment; "
                "set it, or convert the frames to 16-bit PNG.")
    return "Export the image again or remove it from the folder."


def _to_rgb8(image: np.ndarray, path: Path) -> np.ndarray:
    """Gray or BGR of any depth OpenCV decodes -> contiguous (H, W, 3) uint8 RGB. 16-bit input
    is scaled to 8 bits; float input (EXR) is taken as linear light and given the sRGB curve."""
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)
    elif image.dtype.kind == "f":
        image = _linear_to_srgb8(image)
    elif image.dtype != np.uint8:
        raise InputError(f"{path} has {image.dtype} pixels, which this runtime does not read",
                         "Convert it to 8- or 16-bit PNG or JPEG.")
    code = cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


def _linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    value = np.clip(np.nan_to_num(linear.astype(np.float32)), 0.0, 1.0)
    encoded = np.where(value <= 0.0031308, value * 12.92, 1.055 * np.power(value, 1 / 2.4) - 0.055)
    return np.round(encoded * 255.0).astype(np.uint8)


@dataclass(frozen=True)
class _VideoIndex:
    """What one demux pass over a video learns, before any frame is streamed."""

    frame_count: int
    timestamps: list[float]
    pts_to_index: dict[int, int] | None  # None: frames are identified by counting them
    keyframes: list[tuple[int, int]]  # (frame index, seek timestamp) of every keyframe, in index order
    rotation: int
    coded_size: tuple[int, int]  # (width, height) as decoded, before rotation
    fps: float


class VideoSource(FrameSource):
    """A video file decoded with PyAV (FFmpeg)."""

    def __init__(self, path: Path):
        self._path = path
        self._index = _index_video(path)
        width, height = self._index.coded_size
        if self._index.rotation in (90, 270):
            width, height = height, width
        count = self._index.frame_count
        info = SourceInfo(str(path), "video", width, height, count, self._index.fps, self._index.rotation,
                          tuple(footage_frame_numbers(count)))
        super().__init__(info, self._index.timestamps)

    def _generate(self, wanted: range) -> Iterator[Frame]:
        pending = iter(wanted)
        next_wanted = next(pending, None)
        for index, picture, error in self._decoded(wanted.start):
            while next_wanted is not None and next_wanted < index:  # frames that never came out
                yield self._missing(next_wanted, error or "no picture was decoded")
                next_wanted = next(pending, None)
            if next_wanted is None:
                return
            if index == next_wanted:
                yield self._to_frame(index, picture)
                next_wanted = next(pending, None)

    def _to_frame(self, index: int, picture: av.VideoFrame) -> Frame:
        if picture.is_corrupt:
            return self._missing(index, "the decoder reported damaged data")
        width, height = self._index.coded_size
        image = picture.to_ndarray(format="rgb24", width=width, height=height)
        if self.info.rotation:
            image = np.rot90(image, self.info.rotation // 90)
        return Frame(index, self._timestamps[index], np.ascontiguousarray(image))

    def _decoded(self, start: int) -> Iterator[tuple[int, av.VideoFrame | None, str | None]]:
        """(index, picture, last decoder error before it) in index order, beginning at or before
        `start`; ends with (frame_count, None, error) so frames never decoded read as a gap."""
        with av.open(str(self._path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if self._index.pts_to_index is None:
                numbered = _counted(_decode_all(container, stream))
            else:
                numbered = self._by_pts(container, stream, start)
            error = None
            for index, item in numbered:
                if isinstance(item, str):
                    error = item
                    continue
                yield index, item, error
                error = None
            yield self._index.frame_count, None, error

    def _by_pts(self, container, stream, start: int) -> Iterator[tuple[int, av.VideoFrame | str]]:
        """Pictures numbered by their timestamp, after seeking to the last keyframe at or before
        `start`. A seek that lands after `start` is undone by decoding from the first keyframe."""
        keyframes_before = [seek for index, seek in self._index.keyframes if index <= start]
        if len(keyframes_before) > 1:
            container.seek(keyframes_before[-1], stream=stream, backward=True)
            landed = yield from _from_keyframe(self._numbered(_decode_all(container, stream)), start)
            if landed:
                return
            container.seek(self._index.keyframes[0][1], stream=stream, backward=True)
        yield from self._numbered(_decode_all(container, stream))

    def _numbered(self, decoded: Iterator[av.VideoFrame | str]) -> Iterator[tuple[int, av.VideoFrame | str]]:
        pts_to_index = self._index.pts_to_index
        for item in decoded:
            if isinstance(item, str):
                yield -1, item
            elif item.pts in pts_to_index:
                yield pts_to_index[item.pts], item


def _from_keyframe(numbered: Iterator[tuple[int, av.VideoFrame | str]], start: int):
    """Pass on what comes after a seek once a keyframe at or before `start` has come out (what
    comes before it may be built on frames the seek skipped). Returns False, having passed on
    nothing, when the first trustworthy picture is past `start`: the seek overshot."""
    anchored = False
    for index, item in numbered:
        if not anchored:
            if isinstance(item, str) or (index < start and not item.key_frame):
                continue
            if index > start or not item.key_frame:
                return False
            anchored = True
        yield index, item
    return anchored


def _counted(decoded: Iterator[av.VideoFrame | str]) -> Iterator[tuple[int, av.VideoFrame | str]]:
    """Number pictures in output order, for containers whose timestamps are unreliable."""
    index = 0
    for item in decoded:
        if isinstance(item, str):
            yield -1, item
        else:
            yield index, item
            index += 1


def _decode_all(container, stream) -> Iterator[av.VideoFrame | str]:
    """Decoded pictures in presentation order; a decoder error comes as its message and decoding
    goes on. A read error ends the stream after the decoder has been flushed."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as error:
            yield f"reading stopped: {error.strerror}"
            packet = None
        try:
            pictures = stream.decode(packet)
        except av.error.FFmpegError as error:
            yield f"decoding failed: {error.strerror}"
            continue
        yield from pictures
        if packet is None:
            return


def _index_video(path: Path) -> _VideoIndex:
    """Demux every packet of the first video stream (no decoding, except until one picture comes
    out: it proves the codec works and carries the rotation)."""
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise InputError(f"cannot open {path} as a video: {error.strerror}", _VIDEO_HINT) from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream", "Give a file with video in it.")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise InputError(f"{path} uses a video codec this FFmpeg build cannot decode",
                             "Convert it to H.264 MP4 (e.g. with ffmpeg or Blender's video editor).")
        return _build_index(path, container, stream)


def _build_index(path: Path, container, stream) -> _VideoIndex:
    packets, first_picture = _scan(container, stream)
    if not packets:
        raise InputError(f"{path} has no video frames", "Give a video that holds at least one frame.")
    if first_picture is None:
        raise InputError(f"no frame of {path} can be decoded ({stream.codec_context.name} video)", _VIDEO_HINT)
    fps = _fps(stream)
    rotation, coded_size = _rotation(first_picture), (first_picture.width, first_picture.height)
    pts = sorted(packet_pts for packet_pts, _, _ in packets if packet_pts is not None)
    if container.format.name in _COUNTED_FORMATS or len(set(pts)) != len(packets):
        timestamps = [index / fps for index in range(len(packets))]
        return _VideoIndex(len(packets), timestamps, None, [], rotation, coded_size, fps)
    pts_to_index = {value: index for index, value in enumerate(pts)}
    keyframes = sorted((pts_to_index[value], seek) for value, seek, keyframe in packets if keyframe)
    timestamps = [float((value - pts[0]) * stream.time_base) for value in pts]
    return _VideoIndex(len(pts), timestamps, pts_to_index, keyframes or [(0, pts[0])], rotation, coded_size, fps)


def _scan(container, stream) -> tuple[list[tuple[int | None, int, bool]], av.VideoFrame | None]:
    """(pts, seek timestamp, is keyframe) of every frame packet, and the first decoded picture.
    Seeks go to a keyframe's dts: FFmpeg's seek index is keyed by dts."""
    packets = []
    first_picture = None
    for item in _demux_checked(container, stream):
        if item.size == 0:
            continue
        # Discarded packets (an edit list's pre-roll) are no frames, but their keyframe may be
        # the one every later picture is decoded from.
        if not item.is_discard:
            packets.append((item.pts, item.dts if item.dts is not None else item.pts, item.is_keyframe))
        if first_picture is None:
            try:
                pictures = stream.decode(item)
            except av.error.FFmpegError:
                continue
            first_picture = pictures[0] if pictures else None
    if first_picture is None and packets:
        first_picture = next(iter(_flushed(stream)), None)
    return packets, first_picture


def _demux_checked(container, stream) -> Iterator[av.Packet]:
    """Packets until the end or the first read error (a truncated file keeps what it has)."""
    packets = container.demux(stream)
    while True:
        try:
            yield next(packets)
        except (StopIteration, av.error.FFmpegError):
            return


def _flushed(stream) -> list[av.VideoFrame]:
    try:
        return stream.decode(None)
    except av.error.FFmpegError:
        return []


def _rotation(picture: av.VideoFrame) -> int:
    """The counter-clockwise turn that shows the picture upright, from its display matrix."""
    return int(round(picture.rotation / 90.0)) * 90 % 360


def _fps(stream) -> float:
    """The nominal rate; 25 when the file states none (then only counted timestamps use it)."""
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 25.0
