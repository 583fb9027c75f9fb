"""The reconstruction folder: what `reconstruct` writes and the Blender side reads.

Uses the standard library and numpy only, so the Blender extension loads this very file.

Layout (``CAPTURE_DIR/reconstruction/``)::

    header.json             format, format_version, capture_fingerprint, canonical_space,
                            mesh_mode, settings, frame_count, vertex_count, frame_size
                            [width, height], fps, runtime_version
    mesh.npz                canonical_vertices (V, 3) float32  vertex positions in canonical space
                            triangles          (F, 3) int32    counter-clockwise seen from outside
                            uv                 (V, 2) float32  texture coordinates in [0, 1]
    vertices.npy            (T, V, 3) float32  camera space (OpenCV axes, metres), per frame;
                            a plain .npy so readers can memory-map it
    vertex_confidence.npy   (T, V) float16 in [0, 1]
    vertex_filled.npy       (T, V) bool    True where the vertex was not seen and was filled in
    frames.npz              head_pose      (T, 4, 4) float64  canonical -> camera rigid transform
                            intrinsics     (T, 3, 3) float64  pixels
                            frame_state    (T,) uint8  FRAME_TRACKED, FRAME_FILLED (no face,
                                           interpolated across) or FRAME_HELD (no face, held
                                           from the nearest face frame at a clip end)
                            timestamps     (T,) float64 seconds from the source start
                            source_indices (T,) int64  0-based positions in the source
                            frame_numbers  (T,) int64  footage frame numbers (frame_numbers.py):
                                           what the scene, the CSV exports and --frame use
    points.npz              names     (P,) str    stable names such as ``mouth_corner_L``
                            canonical (P, 3) float32
                            positions (T, P, 3) float32 camera space, metres
                            pixels    (T, P, 2) float32 pixel positions (centre of pixel 0 = 0)
                            visible   (T, P) bool
    expressions.npz         optional, written after the rest by the expression solver
                            (model_runtime/expressions/solver.py):
                            names            (52,) str   the ARKit blendshape names, in
                                             model_runtime/expressions/arkit.py's order
                            weights          (T, 52) float32 in [0, 1]
                            head_rotation    (T, 3) float64 yaw, pitch, roll in radians, relative
                                             to a head facing the camera (solver.head_angles)
                            head_translation (T, 3) float64 camera space, metres
                            eye_gaze         (T, 2, 2) float64 [left, right] x [yaw, pitch] in
                                             radians; yaw toward the subject's left, pitch up
                            neutral_frame    () int64, the frame taken as neutral, -1 estimated

Frame t of every array is capture index t. ``_L``/``_R`` are the subject's left and right.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "faceanything-reconstruction"
FORMAT_VERSION = 2
FOLDER_NAME = "reconstruction"
FRAME_TRACKED, FRAME_FILLED, FRAME_HELD = 0, 1, 2
MESH_ARRAYS = ("canonical_vertices", "triangles", "uv")
FRAME_ARRAYS = ("head_pose", "intrinsics", "frame_state", "timestamps", "source_indices", "frame_numbers")
POINT_ARRAYS = ("names", "canonical", "positions", "pixels", "visible")
EXPRESSIONS_FILE = "expressions.npz"
EXPRESSION_ARRAYS = ("names", "weights", "head_rotation", "head_translation", "eye_gaze", "neutral_frame")


@dataclass
class Reconstruction:
    header: dict
    canonical_vertices: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray
    vertices: np.ndarray
    vertex_confidence: np.ndarray
    vertex_filled: np.ndarray
    head_pose: np.ndarray
    intrinsics: np.ndarray
    frame_state: np.ndarray
    timestamps: np.ndarray
    source_indices: np.ndarray
    frame_numbers: np.ndarray
    point_names: list[str]
    point_canonical: np.ndarray
    point_positions: np.ndarray
    point_pixels: np.ndarray
    point_visible: np.ndarray

    @property
    def frame_count(self) -> int:
        return int(self.vertices.shape[0])

    def frame_index(self, number: int) -> int:
        """The capture index of footage frame `number` (ValueError names the range when absent)."""
        found = np.flatnonzero(self.frame_numbers == number)
        if not found.size:
            first, last = int(self.frame_numbers[0]), int(self.frame_numbers[-1])
            raise ValueError(f"frame {number} is not in the reconstruction (its frames are {first} to {last})")
        return int(found[0])

    @property
    def frame_size(self) -> tuple[int, int]:
        width, height = self.header["frame_size"]
        return int(width), int(height)


def reconstruction_dir(capture_dir: Path) -> Path:
    return Path(capture_dir) / FOLDER_NAME


def load_reconstruction(folder: Path, memory_map: bool = True) -> Reconstruction:
    """Read a reconstruction folder; `vertices.npy` stays on disk when `memory_map` is set."""
    folder = Path(folder)
    header_path = folder / "header.json"
    if not header_path.is_file():
        raise FileNotFoundError(f"{folder} holds no reconstruction (no header.json); run reconstruct first")
    header = json.loads(header_path.read_text(encoding="utf-8"))
    if header.get("format") != FORMAT or header.get("format_version", 0) != FORMAT_VERSION:
        raise ValueError(f"{header_path} is not a reconstruction this version can read")
    mode = "r" if memory_map else None
    with np.load(folder / "mesh.npz") as mesh, np.load(folder / "frames.npz") as frames, np.load(
        folder / "points.npz"
    ) as points:
        return Reconstruction(
            header=header,
            canonical_vertices=mesh["canonical_vertices"],
            triangles=mesh["triangles"],
            uv=mesh["uv"],
            vertices=np.load(folder / "vertices.npy", mmap_mode=mode),
            vertex_confidence=np.load(folder / "vertex_confidence.npy", mmap_mode=mode),
            vertex_filled=np.load(folder / "vertex_filled.npy", mmap_mode=mode),
            head_pose=frames["head_pose"],
            intrinsics=frames["intrinsics"],
            frame_state=frames["frame_state"],
            timestamps=frames["timestamps"],
            source_indices=frames["source_indices"],
            frame_numbers=frames["frame_numbers"],
            point_names=[str(name) for name in points["names"]],
            point_canonical=points["canonical"],
            point_positions=points["positions"],
            point_pixels=points["pixels"],
            point_visible=points["visible"],
        )


def vertex_columns(folder: Path, columns: np.ndarray, frames_at_once: int = 256,
                   frames: slice = slice(None)) -> np.ndarray:
    """(T, len(columns), 3) float32: some vertices of every frame of `vertices.npy` (of the
    `frames`, a slice without step), read a run of frames at a time with plain file reads, so
    memory follows the columns asked for, not the clip (a memory map would keep every page it
    touched resident)."""
    path = Path(folder) / "vertices.npy"
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(handle)
        offset = handle.tell()
    first, stop, _ = frames.indices(shape[0])
    vertex_count = shape[1]
    out = np.empty((max(stop - first, 0), len(columns), 3), np.float32)
    for start in range(first, stop, frames_at_once):
        count = min(frames_at_once, stop - start)
        rows = np.fromfile(path, dtype, count=count * vertex_count * 3, offset=offset + start * vertex_count * 3 * dtype.itemsize)
        out[start - first:start - first + count] = rows.reshape(count, vertex_count, 3)[:, columns]
    return out


class VertexArrayWriter:
    """Writes `vertices.npy`, `vertex_confidence.npy` and `vertex_filled.npy` a run of frames at
    a time with plain file writes: no memory map, so the writer's memory stays flat however long
    the clip (a mapping would keep every page it touched resident)."""

    DTYPES = {"vertices.npy": np.float32, "vertex_confidence.npy": np.float16, "vertex_filled.npy": np.bool_}

    def __init__(self, folder: Path, frame_count: int, vertex_count: int):
        self.files = {}
        for name, dtype in self.DTYPES.items():
            shape = (frame_count, vertex_count) + ((3,) if name == "vertices.npy" else ())
            header = np.lib.format.open_memmap(Path(folder) / name, mode="w+", dtype=dtype, shape=shape)
            self.files[name] = (open(Path(folder) / name, "r+b"), header.offset, int(np.prod(shape[1:])) * np.dtype(dtype).itemsize)
            del header

    def write(self, name: str, start_frame: int, rows: np.ndarray) -> None:
        """Frames `start_frame` onwards of array `name` ("vertices.npy", ...)."""
        handle, offset, row_bytes = self.files[name]
        handle.seek(offset + start_frame * row_bytes)
        handle.write(np.ascontiguousarray(rows, self.DTYPES[name]).tobytes())

    def close(self) -> None:
        for handle, _, _ in self.files.values():
            handle.close()


def write_reconstruction_files(folder: Path, header: dict, mesh: dict, frames: dict, points: dict) -> None:
    """Write header.json, mesh.npz, frames.npz and points.npz (arrays named as in the layout
    above); header.json goes last, so a folder with a header is complete."""
    folder = Path(folder)
    for name, arrays, keys in (("mesh", mesh, MESH_ARRAYS), ("frames", frames, FRAME_ARRAYS), ("points", points, POINT_ARRAYS)):
        if set(arrays) != set(keys):
            raise ValueError(f"{name}.npz takes exactly {', '.join(keys)}; got {', '.join(sorted(arrays))}")
        np.savez(folder / f"{name}.npz", **arrays)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, **header}
    (folder / "header.json").write_text(json.dumps(header, indent=1), encoding="utf-8")


@dataclass
class ExpressionTrack:
    """The curves of ``expressions.npz`` (see the layout above)."""

    names: list[str]
    weights: np.ndarray
    head_rotation: np.ndarray
    head_translation: np.ndarray
    eye_gaze: np.ndarray
    neutral_frame: int

    @property
    def frame_count(self) -> int:
        return int(self.weights.shape[0])


def write_expression_curves(folder: Path, arrays: dict) -> Path:
    """Write ``expressions.npz`` (arrays named as in EXPRESSION_ARRAYS) under a temporary name
    and rename it, so a reader never sees half a file; returns its path."""
    folder = Path(folder)
    if set(arrays) != set(EXPRESSION_ARRAYS):
        raise ValueError(f"{EXPRESSIONS_FILE} takes exactly {', '.join(EXPRESSION_ARRAYS)}; got {', '.join(sorted(arrays))}")
    path = folder / EXPRESSIONS_FILE
    partial = folder / f".{EXPRESSIONS_FILE}.partial"
    with open(partial, "wb") as handle:
        np.savez(handle, **arrays)
    partial.replace(path)
    return path


def load_expression_curves(folder: Path) -> ExpressionTrack:
    """Read ``expressions.npz`` from a reconstruction folder."""
    path = Path(folder) / EXPRESSIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{Path(folder)} holds no expression curves ({EXPRESSIONS_FILE}); "
                                "solve them first (python -m model_runtime reconstruct CAPTURE_DIR)")
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in EXPRESSION_ARRAYS if key not in data.files]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)}; solve the expressions again")
        return ExpressionTrack(
            names=[str(name) for name in data["names"]],
            weights=data["weights"],
            head_rotation=data["head_rotation"],
            head_translation=data["head_translation"],
            eye_gaze=data["eye_gaze"],
            neutral_frame=int(data["neutral_frame"]),
        )
