"""Does the camera background show the footage frame the mesh was made from?

Blender's FFmpeg and the runtime's PyAV can disagree on which picture a frame number is. On the
GRID MPEG-1 clips Blender shows footage frame 12 for scene frames 1-12 (its seek lands at the
end of the first group of pictures) while PyAV decodes every frame exactly, so the mesh would
sit on the wrong face for half a second. After a build from a video, a run of captured frames is
compared as Blender shows them (the compositor's render of the clip) and as the runtime decodes
them; where Blender shows another frame, the runtime writes the footage as an image sequence
(PNG, exact) and the clip plays that instead.

The comparison itself (`frames_shown_elsewhere`) is plain numpy.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import bpy
import numpy as np

from ..runtime_paths import UserError, dev_checkout_python, get_preferences, preferred_runtime_python, runtime_source_root
from .preview import read_image, render_footage_frames

# Captured frames compared: enough to span a group of pictures (12-15 frames in MPEG-1/2).
SAMPLE_FRAMES = 16
# Mean absolute difference (0-255) by which another frame must match Blender's picture better
# than the intended one to count as shown instead: decoders' colour conversions differ by
# about 1, neighbouring frames of a talking head by 2-3.
CLEARLY_CLOSER = 0.5
# Every PIXEL_STEP-th row and column are compared: plenty to tell frames apart.
PIXEL_STEP = 2
RUNTIME_TIMEOUT_S = 600

# Run by the runtime's interpreter: decodes frames with the runtime's own frame source.
# argv: "sample" FOOTAGE OUT.npz I,J,K  |  "sequence" FOOTAGE FOLDER STOP
RUNTIME_SCRIPT = """
import sys
import cv2
import numpy as np
from model_runtime.frames import open_source
command, footage, target, which = sys.argv[1:5]
wanted = [int(i) for i in which.split(",")] if command == "sample" else list(range(int(which)))
images, previous = {}, None
with open_source(footage) as source:
    for frame in source.frames(min(wanted), max(wanted) + 1):
        image = frame.image if frame.image is not None else previous
        previous = image
        if frame.index not in wanted or image is None:
            continue
        if command == "sample":
            images[frame.index] = image
        elif not cv2.imwrite(f"{target}/{frame.index:06d}.png", np.ascontiguousarray(image[..., ::-1])):
            sys.exit(f"cannot write {target}/{frame.index:06d}.png")
if command == "sample":
    np.savez(target, **{str(i): images[i] for i in wanted if i in images})
"""


def frames_shown_elsewhere(shown: list[np.ndarray], decoded: list[np.ndarray]) -> list[int]:
    """Positions k where Blender's picture ``shown[k]`` is clearly another of the runtime's
    ``decoded`` frames than ``decoded[k]`` (all (H, W, 3) of the same footage frames)."""
    distance = np.array([[np.abs(s.astype(np.float32) - d).mean() for d in decoded] for s in shown])
    return [k for k in range(len(shown)) if distance[k].min() < distance[k, k] - CLEARLY_CLOSER]


def find_runtime_python() -> Path | None:
    """The runtime interpreter the preferences name (or find), else a checkout's .venv-runtime."""
    try:
        return preferred_runtime_python(get_preferences())[0]
    except (KeyError, AttributeError, UserError):  # the add-on is not enabled, or no runtime is set up
        return dev_checkout_python()


def run_runtime(python: Path, *arguments: str) -> None:
    done = subprocess.run(
        [str(python), "-c", RUNTIME_SCRIPT, *arguments],
        cwd=runtime_source_root(), capture_output=True, text=True, timeout=RUNTIME_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-1000:] or f"exit status {done.returncode}")


def runtime_frames(python: Path, footage: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """Source frames ``indices`` of ``footage`` as the runtime decodes them (RGB uint8)."""
    with tempfile.TemporaryDirectory(prefix="faceanything-frames-") as folder:
        target = Path(folder) / "frames.npz"
        run_runtime(python, "sample", str(footage), str(target), ",".join(map(str, indices)))
        with np.load(target) as arrays:
            return {int(key): arrays[key] for key in arrays.files}


def blender_frames(scene: bpy.types.Scene, clip: bpy.types.MovieClip, scene_frames: list[int]) -> list[np.ndarray]:
    """What the camera background shows at ``scene_frames`` (RGB, row 0 at the top)."""
    with tempfile.TemporaryDirectory(prefix="faceanything-shown-") as folder:
        return [read_image(path)[:, :, :3] for path in render_footage_frames(scene, clip, scene_frames, Path(folder))]


def check_footage_decoding(
    scene: bpy.types.Scene,
    clip: bpy.types.MovieClip,
    footage: Path,
    source_indices: np.ndarray,
    scene_frames: np.ndarray,
    sequence_folder: tuple[Path, str],
    warnings: list[str],
) -> bpy.types.MovieClip:
    """``clip``, or the clip of an image sequence the runtime wrote into ``sequence_folder``
    ((folder, path to store)) when Blender decodes ``footage`` differently from the runtime."""
    python = find_runtime_python()
    if python is None:
        warnings.append(f"No runtime to check how Blender decodes {footage.name}; the background may be off by frames.")
        return clip
    count = min(SAMPLE_FRAMES, len(source_indices))
    indices = [int(i) for i in source_indices[:count]]
    try:
        decoded = runtime_frames(python, footage, indices)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        warnings.append(f"Could not check how Blender decodes {footage.name} ({exc}).")
        return clip
    usable = [k for k in range(count) if indices[k] in decoded]
    try:
        shown = blender_frames(scene, clip, [int(scene_frames[k]) for k in usable])
    except RuntimeError as exc:  # the render refused (no camera, a render already running)
        warnings.append(f"Could not check how Blender decodes {footage.name} ({exc}).")
        return clip
    step = PIXEL_STEP
    wrong = frames_shown_elsewhere(
        [picture[::step, ::step] for picture in shown], [decoded[indices[k]][::step, ::step] for k in usable]
    )
    if not wrong:
        return clip
    return image_sequence_clip(python, clip, footage, int(source_indices[-1]) + 1, sequence_folder, [
        indices[usable[k]] for k in wrong], warnings)


def image_sequence_clip(
    python: Path, clip, footage: Path, frame_count: int, sequence_folder: tuple[Path, str], wrong: list[int], warnings
) -> bpy.types.MovieClip:
    """The footage's first ``frame_count`` frames as the runtime decodes them, as a PNG sequence
    clip set up like ``clip``; written once, reused by a re-run."""
    folder, stored = sequence_folder
    first = folder / "000000.png"
    if len(list(folder.glob("*.png"))) != frame_count:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            run_runtime(python, "sequence", str(footage), str(folder), str(frame_count))
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            warnings.append(f"Blender shows other frames of {footage.name} than were captured, and writing an "
                            f"image sequence failed ({exc}): the background is off there.")
            return clip
    sequence = bpy.data.movieclips.load(str(first), check_existing=True)
    sequence.name = f"{footage.stem} frames"
    sequence.filepath = f"{stored}/{first.name}"
    sequence.frame_start, sequence.frame_offset = clip.frame_start, clip.frame_offset
    shown = ", ".join(str(i) for i in wrong[:5]) + (" ..." if len(wrong) > 5 else "")
    warnings.append(
        f"Blender's FFmpeg shows other pictures than the runtime decoded for frames {shown} of {footage.name}; "
        f"the background plays an image sequence the runtime wrote instead ({folder})."
    )
    return sequence
