"""Exports that need no Blender: 2D point tracks as CSV, the mesh at one frame as OBJ or PLY.

CSV columns: ``frame`` (the footage frame number, see frame_numbers.py), ``name``, ``x``, ``y`` (pixels,
origin at the top-left pixel's centre, y down, as OpenCV and most trackers) and ``visible``
(1 where the point was seen, 0 where it was filled in).

Meshes are written in camera space, metres, with UVs. By default the axes are OpenGL's (x right,
y up, z towards the viewer: ``axes="opengl"``), which OBJ/PLY viewers and importers expect, so
the face comes in upright; ``axes="opencv"`` keeps the reconstruction's own axes (y down, z away).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..capture_folder import MANIFEST_NAME, CaptureFolder
from ..errors import UserError
from ..reconstruction_format import Reconstruction, load_reconstruction, reconstruction_dir

AXES = {"opengl": np.array([1.0, -1.0, -1.0]), "opencv": np.array([1.0, 1.0, 1.0])}


def open_reconstruction(path: str | Path) -> Reconstruction:
    """The reconstruction in a capture folder (or a reconstruction folder itself), refused when
    it does not belong to the capture beside it (other footage or settings, other frames)."""
    path = Path(path)
    folder = path if (path / "header.json").is_file() else reconstruction_dir(path)
    try:
        recon = load_reconstruction(folder)
    except FileNotFoundError as exc:
        raise UserError(
            f"{path} holds no reconstruction",
            f"Run it first: python -m model_runtime reconstruct {path}",
            code="no_reconstruction",
        ) from exc
    except ValueError as exc:
        raise UserError(str(exc), "Reconstruct the capture again with this version.", code="no_reconstruction") from exc
    _check_belongs_to_capture(recon, folder)
    return recon


def _check_belongs_to_capture(recon: Reconstruction, folder: Path) -> None:
    """A reconstruction is used only with the capture it was made from: after a new capture into
    the folder (``--overwrite``, other footage) the old one must not pass for it."""
    capture_dir = folder.parent
    if not (capture_dir / MANIFEST_NAME).is_file():
        return  # a reconstruction folder on its own, copied away from its capture
    capture = CaptureFolder(capture_dir)
    if recon.header.get("capture_fingerprint") != capture.fingerprint or recon.frame_count != capture.frame_count:
        raise UserError(
            f"the reconstruction in {folder} was made from another capture than the one in {capture_dir} "
            f"(footage {capture.manifest['source']['path']})",
            f"Reconstruct it again: python -m model_runtime reconstruct {capture_dir}",
            code="no_reconstruction",
        )


def export_tracks_csv(capture_dir: str | Path, path: str | Path) -> Path:
    """Every point in every frame as one CSV row (frame, name, x, y, visible)."""
    recon = open_reconstruction(capture_dir)
    path = Path(path)
    frames, count = recon.point_pixels.shape[:2]
    with _open_for_writing(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frame", "name", "x", "y", "visible"])
        for t in range(frames):
            number = int(recon.frame_numbers[t])
            for p in range(count):
                x, y = recon.point_pixels[t, p]
                writer.writerow([number, recon.point_names[p], f"{x:.3f}", f"{y:.3f}", int(recon.point_visible[t, p])])
    return path


def export_mesh(capture_dir: str | Path, path: str | Path, frame: int | None = None, axes: str = "opengl") -> Path:
    """The mesh at footage frame number `frame` (None: the first captured frame) as .obj or .ply
    (chosen by the file's extension)."""
    recon = open_reconstruction(capture_dir)
    path = Path(path)
    writers = {".obj": write_obj, ".ply": write_ply}
    if path.suffix.lower() not in writers:
        raise UserError(f"cannot write a mesh as {path.name}", "Name the file .obj or .ply.", code="bad_option")
    if axes not in AXES:
        raise UserError(f"unknown axes {axes!r}", f"Choose one of {', '.join(AXES)}.", code="bad_option")
    frame = int(recon.frame_numbers[0]) if frame is None else frame
    try:
        index = recon.frame_index(frame)
    except ValueError as exc:
        raise UserError(str(exc), "Give a footage frame number of the capture with --frame.", code="bad_option") from None
    vertices = np.asarray(recon.vertices[index], np.float64) * AXES[axes]
    writers[path.suffix.lower()](path, vertices, recon.triangles, recon.uv, f"footage frame {frame}, {axes} camera axes, metres")
    return path


def export_files(capture_dir: str | Path, options: dict) -> list[Path]:
    """Every file the export options (option_schema.py, stage ``export``) ask for; a UserError when none."""
    from ..expressions.livelink import export_livelink_csv

    if not any(options.get(name) for name in ("tracks_csv", "livelink_csv", "mesh_file")):
        raise UserError("nothing to export", "Give --tracks-csv FILE, --livelink-csv FILE and/or --mesh-file FILE.obj|.ply.",
                        code="bad_option")
    open_reconstruction(capture_dir)  # refused before anything is written when it is not this capture's
    written = []
    if options.get("tracks_csv"):
        written.append(export_tracks_csv(capture_dir, options["tracks_csv"]))
    if options.get("livelink_csv"):
        written.append(export_livelink_csv(Path(capture_dir), Path(options["livelink_csv"])))
    if options.get("mesh_file"):
        written.append(export_mesh(capture_dir, options["mesh_file"], frame=options.get("frame")))
    return written


def write_obj(path: Path, vertices: np.ndarray, triangles: np.ndarray, uv: np.ndarray, comment: str = "") -> None:
    """Wavefront OBJ with one UV per vertex (faces `v/vt`, 1-based)."""
    lines = [f"# Face Anything for Blender: {comment}"] if comment else []
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv]
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in np.asarray(triangles) + 1]
    with _open_for_writing(path) as handle:
        handle.write("\n".join(lines) + "\n")


def write_ply(path: Path, vertices: np.ndarray, triangles: np.ndarray, uv: np.ndarray, comment: str = "") -> None:
    """Binary little-endian PLY: vertices with (s, t) texture coordinates, triangle faces."""
    vertex = np.zeros(len(vertices), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("s", "<f4"), ("t", "<f4")])
    for i, name in enumerate("xyz"):
        vertex[name] = vertices[:, i]
    vertex["s"], vertex["t"] = uv[:, 0], uv[:, 1]
    face = np.zeros(len(triangles), dtype=[("count", "u1"), ("indices", "<i4", (3,))])
    face["count"] = 3
    face["indices"] = triangles
    header = "\n".join(
        ["ply", "format binary_little_endian 1.0"]
        + ([f"comment Face Anything for Blender: {comment}"] if comment else [])
        + [f"element vertex {len(vertex)}"]
        + [f"property float {name}" for name in ("x", "y", "z", "s", "t")]
        + [f"element face {len(face)}", "property list uchar int vertex_indices", "end_header"]
    ) + "\n"
    with _open_for_writing(path, mode="wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(vertex.tobytes())
        handle.write(face.tobytes())


def _open_for_writing(path: Path, mode: str = "w", newline: str | None = None):
    try:
        if "b" in mode:
            return open(path, mode)
        return open(path, mode, encoding="utf-8", newline=newline)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}", "Choose a file in a folder you can write to.", code="bad_output") from exc
