"""`make bench`, Blender side: how fast a capture becomes a scene, how big the .blend gets, and
how playback slows down with shape keys. Synthetic reconstructions (tests/fixtures/synthetic.py),
so it needs no runtime and no footage. Prints a markdown table and writes it to bench/scene.md.

    .venv-blender/bin/python -m bench.scene [--output bench/scene.md]
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import bpy

from faceanything_blender.scene import build_capture
from tests.fixtures.synthetic import patch_clip, write_reconstruction

GRID = 90  # 8,100 vertices
POINTS = 68
CASES = (  # (animation mode, frames, target seconds or None)
    ("POINT_CACHE", 1000, 2.0),
    ("SHAPE_KEYS", 300, 3.0),
    ("POINT_CACHE", 3000, None),
    ("SHAPE_KEYS", 500, None),
    ("SHAPE_KEYS", 1000, None),
    ("SHAPE_KEYS", 2000, None),
)
PLAYBACK_FRAMES = 50  # frames stepped through to time playback


def playback_ms(scene: bpy.types.Scene, face: bpy.types.Object) -> float:
    """Mean time to step one frame and evaluate the face mesh, over frames spread across the range."""
    span = scene.frame_end - scene.frame_start
    frames = [scene.frame_start + span * k // PLAYBACK_FRAMES for k in range(PLAYBACK_FRAMES)]
    started = time.perf_counter()
    for frame in frames:
        scene.frame_set(frame)
        face.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.vertices[0].co
    return (time.perf_counter() - started) / len(frames) * 1000


def measure(workdir: Path, animation: str, frame_count: int) -> dict:
    capture = write_reconstruction(
        workdir / f"capture-{frame_count}", patch_clip(frame_count=frame_count, grid=GRID, point_count=POINTS)
    )
    bpy.ops.wm.read_homefile(use_empty=True)
    blend = workdir / f"{animation.lower()}-{frame_count}.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))  # as the CLI does: the cache goes beside it
    started = time.perf_counter()
    built = build_capture(bpy.context.scene, capture, footage="", animation=animation)
    build_s = time.perf_counter() - started
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    cache = Path(bpy.path.abspath(built["cache_path"])) if built["cache_path"] else None
    return {
        "animation": animation,
        "frames": frame_count,
        "build_s": build_s,
        "blend_mb": blend.stat().st_size / 1e6,
        "cache_mb": cache.stat().st_size / 1e6 if cache else 0.0,
        "playback_ms": playback_ms(bpy.context.scene, bpy.data.objects[built["mesh"]]),
    }


def table(rows: list[dict]) -> str:
    lines = [
        f"Scene build, synthetic capture: {GRID * GRID:,} vertices, {POINTS} point empties + head "
        f"(bpy {bpy.app.version_string}, {platform.processor() or platform.machine()}).",
        "",
        "| animation | frames | build (s) | target (s) | .blend (MB, zstd) | point cache (MB) | playback (ms/frame) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    targets = {(animation, frames): target for animation, frames, target in CASES}
    for row in rows:
        target = targets[(row["animation"], row["frames"])]
        lines.append(
            f"| {row['animation']} | {row['frames']:,} | {row['build_s']:.2f} | {f'< {target:g}' if target else '-'} "
            f"| {row['blend_mb']:.1f} | {row['cache_mb']:.1f} | {row['playback_ms']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scene", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "scene.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="faceanything-bench-") as folder:
        rows = [measure(Path(folder), animation, frames) for animation, frames, _target in CASES]
    report = table(rows)
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
