"""The capture's tracked points as 2D tracks of the footage's Movie Clip.

One track per point, named like its empty (``FA_mouth_corner_L``), with one marker per captured
frame, disabled where the point was hidden; Blender's stabilisation, plane tracking and camera
solve can use them. Marker positions come from the reconstruction's pixels through
`axes.opencv_pixels_to_clip`, the one pixel-convention conversion.

Tracks are not data-blocks and Blender's Python cannot delete them, so a re-run rewrites the
tracks of the same names in place: every marker replaced, markers on frames no longer captured
removed.
"""
from __future__ import annotations

import bpy
import numpy as np

from .axes import opencv_pixels_to_clip


def clip_frames(clip: bpy.types.MovieClip, scene_frames: np.ndarray) -> np.ndarray:
    """The clip's own frame numbers (what markers are keyed on) of scene frames."""
    return np.asarray(scene_frames, np.int64) - clip.frame_start + 1


def write_tracks(
    clip: bpy.types.MovieClip,
    track_names: list[str],
    pixels: np.ndarray,
    visible: np.ndarray,
    scene_frames: np.ndarray,
    frame_size: tuple[int, int],
) -> list[str]:
    """Write (T, P, 2) OpenCV ``pixels`` and (T, P) ``visible`` of ``frame_size`` footage as
    tracks of ``clip`` named ``track_names``; returns the track names."""
    frames = clip_frames(clip, scene_frames)
    coordinates = opencv_pixels_to_clip(pixels, *frame_size).astype(np.float32)
    hidden = ~np.asarray(visible, bool)
    tracks = clip.tracking.tracks
    for p, name in enumerate(track_names):
        track = tracks.get(name) or tracks.new(name=name, frame=int(frames[0]))
        write_markers(track, frames, coordinates[:, p], hidden[:, p])
    return list(track_names)


def write_markers(track, frames: np.ndarray, coordinates: np.ndarray, hidden: np.ndarray) -> None:
    """Exactly one marker per frame of ``frames`` at ``coordinates``, muted where ``hidden``."""
    markers = track.markers
    for frame, co in zip(frames.tolist(), coordinates.tolist()):
        markers.insert_frame(frame, co=co)
    for frame in {marker.frame for marker in markers} - set(frames.tolist()):
        markers.delete_frame(frame)
    # Markers are kept sorted by frame, as `frames` is.
    markers.foreach_set("co", coordinates.ravel())
    markers.foreach_set("mute", hidden.astype(np.int32))
