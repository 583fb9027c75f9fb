"""Blender data from a capture's reconstruction: camera, footage, face mesh, empties, preview.

`build_from_capture` is called on the main thread after a capture and reconstruction;
`render_preview` writes a still of the result over the footage.
"""
from .build import ANIMATION_MODES, build_capture, build_from_capture
from .preview import render_preview

__all__ = ["ANIMATION_MODES", "build_capture", "build_from_capture", "render_preview"]
