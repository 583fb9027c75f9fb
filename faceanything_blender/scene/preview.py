"""A preview still: the face mesh rendered with Workbench over the footage frame.

Workbench does not render camera backgrounds, so the footage is composited under the render:
the mesh is rendered on a transparent film and laid over the scene's movie clip at the same
frame by a temporary compositor node tree (the clip node reads the frame the camera shows).
Every scene setting touched is put back afterwards, so a preview never changes the .blend.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import bpy
import numpy as np

# How opaque the mesh is over the footage, so the face stays visible underneath.
MESH_OPACITY = 0.75


def footage_clip(scene: bpy.types.Scene) -> bpy.types.MovieClip | None:
    """The clip behind the scene camera, else the scene's active clip."""
    camera = scene.camera
    if camera is not None and camera.type == "CAMERA":
        for background in camera.data.background_images:
            if background.source == "MOVIE_CLIP" and background.clip is not None:
                return background.clip
    return scene.active_clip


@contextmanager
def _temporarily(target, **values):
    saved = {name: getattr(target, name) for name in values}
    for name, value in values.items():
        setattr(target, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(target, name, value)


def _compositor(scene: bpy.types.Scene, clip: bpy.types.MovieClip) -> bpy.types.NodeTree:
    tree = bpy.data.node_groups.new("FA preview", "CompositorNodeTree")
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    footage = tree.nodes.new("CompositorNodeMovieClip")
    footage.clip = clip
    render = tree.nodes.new("CompositorNodeRLayers")
    render.scene = scene
    over = tree.nodes.new("CompositorNodeAlphaOver")
    over.inputs["Factor"].default_value = MESH_OPACITY
    output = tree.nodes.new("NodeGroupOutput")
    tree.links.new(footage.outputs["Image"], over.inputs["Background"])
    tree.links.new(render.outputs["Image"], over.inputs["Foreground"])
    tree.links.new(over.outputs["Image"], output.inputs[0])
    return tree


def render_preview(scene: bpy.types.Scene, path: Path | str, frame: int | None = None) -> Path:
    """Render ``scene``'s camera at ``frame`` (default: the middle of the frame range) with
    Workbench over the footage and write a PNG to ``path``. Without footage the PNG has a
    transparent background."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if frame is None:
        frame = (scene.frame_start + scene.frame_end) // 2
    clip = footage_clip(scene)
    tree = _compositor(scene, clip) if clip is not None else None
    saved_frame = scene.frame_current
    image = scene.render.image_settings
    try:
        with (
            _temporarily(scene.render, engine="BLENDER_WORKBENCH", film_transparent=True, filepath=str(path)),
            _temporarily(image, file_format="PNG", color_mode="RGBA", color_depth="8"),
            # The footage's colours pass through unchanged (no filmic/AgX tone mapping).
            _temporarily(scene.view_settings, view_transform="Standard", look="None", exposure=0.0, gamma=1.0),
            _temporarily(scene, compositing_node_group=tree),
        ):
            scene.frame_set(frame)
            bpy.ops.render.render(write_still=True, scene=scene.name)
    finally:
        scene.frame_set(saved_frame)
        if tree is not None:
            bpy.data.node_groups.remove(tree)
    return path


def read_image(path: Path) -> np.ndarray:
    """(H, W, 4) float pixel values in 0..255 of an image file, row 0 at the top."""
    image = bpy.data.images.load(str(path))
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1] * 255.0  # Blender stores rows bottom-up


def render_footage_frames(scene: bpy.types.Scene, clip: bpy.types.MovieClip, frames, folder: Path) -> list[Path]:
    """What the camera background shows at each scene frame of ``frames``: ``clip`` as Blender
    decodes it, rendered through the compositor alone to ``folder/NNNNNN.png`` (8-bit RGB,
    colours unchanged). Every scene setting touched is put back."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tree = bpy.data.node_groups.new("FA footage", "CompositorNodeTree")
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    footage = tree.nodes.new("CompositorNodeMovieClip")
    footage.clip = clip
    tree.links.new(footage.outputs["Image"], tree.nodes.new("NodeGroupOutput").inputs[0])
    saved_frame = scene.frame_current
    paths = []
    try:
        with (
            _temporarily(scene.render, engine="BLENDER_WORKBENCH", resolution_percentage=100),
            _temporarily(scene.render.image_settings, file_format="PNG", color_mode="RGB", color_depth="8"),
            _temporarily(scene.view_settings, view_transform="Standard", look="None", exposure=0.0, gamma=1.0),
            _temporarily(scene, compositing_node_group=tree),
        ):
            for frame in frames:
                path = folder / f"{int(frame):06d}.png"
                scene.frame_set(int(frame))
                with _temporarily(scene.render, filepath=str(path)):
                    bpy.ops.render.render(write_still=True, scene=scene.name)
                paths.append(path)
    finally:
        scene.frame_set(saved_frame)
        bpy.data.node_groups.remove(tree)
    return paths
