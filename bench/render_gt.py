"""Render one benchmark sequence with Cycles and write exact ground truth beside every frame.

A rendering tool run by Blender's Python (accuracy.py runs it as a subprocess; the runtime never
imports bpy)::

    .venv-blender/bin/python -m bench.render_gt --out DIR --style talk --seed 11 \\
        [--frames 60] [--size 384] [--samples 16]

DIR receives ``sequence.npz`` (the spec, the triangles and the expression names),
``frames/NNNNNN.png`` (Cycles, CPU, no denoising), ``gt/NNNNNN.npz`` (groundtruth.py, computed
analytically from the same posed mesh) and, last, ``done.json``. Frames already written are
kept, so an interrupted render resumes.

Blender's camera sits at the origin looking down -Z with +Y up, so a camera-space (OpenCV)
point (x, y, z) is the Blender point (x, -y, -z); the lens is set from the focal length in
pixels with a 36 mm sensor fitted horizontally, which puts the principal point at the image
centre, as `SequenceSpec.intrinsics` says.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from .groundtruth import ground_truth_frame
from .sequences import (BOX_TRIANGLES, MATERIAL_IRIS, MATERIAL_SCLERA, MATERIAL_SKIN, STYLES, FaceModel,
                        SequenceSpec, load_face_model, make_sequence)

SENSOR_WIDTH_MM = 36.0
OPENCV_TO_BLENDER = np.diag([1.0, -1.0, -1.0])
INTERIOR_COLOUR = (0.03, 0.008, 0.008, 1.0)  # the mouth cavity, seen as the back of the head's inside
SCLERA_COLOUR = (0.75, 0.72, 0.68, 1.0)
IRIS_COLOUR = (0.02, 0.015, 0.01, 1.0)

REST_ATTRIBUTE = "rest_position"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.render_gt", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder to write the sequence into")
    parser.add_argument("--style", required=True, choices=STYLES)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, default=384, help="square frame size in pixels")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    args = parser.parse_args(argv)
    model = load_face_model()
    spec = make_sequence(args.style, args.seed, args.frames, args.size, model=model)
    seconds = render_sequence(spec, model, args.out, args.samples)
    print(f"{spec.name}: {spec.frame_count} frames at {spec.image_size} px, {seconds:.2f} s/frame -> {args.out}")
    return 0


def render_sequence(spec: SequenceSpec, model: FaceModel, out: Path, samples: int) -> float:
    """Render every missing frame of `spec` into `out`; returns seconds per rendered frame."""
    out = Path(out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    (out / "gt").mkdir(exist_ok=True)
    _save_npz(out / "sequence.npz", {**spec.to_arrays(), "triangles": model.triangles,
                                     "expression_names": np.array(model.expression_names)})
    head, occluder = _build_scene(spec, model, samples)
    started, rendered = time.perf_counter(), 0
    for frame in range(spec.frame_count):
        image_path = out / "frames" / f"{frame:06d}.png"
        truth_path = out / "gt" / f"{frame:06d}.npz"
        if image_path.is_file() and truth_path.is_file():
            continue
        _pose_frame(spec, model, frame, head, occluder)
        _render_to(image_path)
        _save_npz(truth_path, ground_truth_frame(spec, model, frame))
        rendered += 1
    done_path = out / "done.json"
    if rendered == 0 and done_path.is_file():  # nothing was missing: keep the first render's timing
        return float(json.loads(done_path.read_text(encoding="utf-8"))["seconds_per_frame"])
    seconds = (time.perf_counter() - started) / max(rendered, 1)
    done = {"name": spec.name, "fingerprint": spec.fingerprint(), "frames": spec.frame_count,
            "image_size": spec.image_size, "samples": samples, "seconds_per_frame": round(seconds, 3),
            "blender": bpy.app.version_string}
    done_path.write_text(json.dumps(done, indent=1), encoding="utf-8")
    return seconds


def _save_npz(path: Path, arrays: dict) -> None:
    """Compressed npz written under a temporary name and renamed: a frame exists whole or not at all."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    os.replace(tmp, path)


def _render_to(image_path: Path) -> None:
    scene = bpy.context.scene
    partial = image_path.with_name(f".{image_path.stem}.partial.png")
    scene.render.filepath = str(partial)
    bpy.ops.render.render(write_still=True)
    os.replace(partial, image_path)


def _to_blender(points: np.ndarray) -> np.ndarray:
    return (np.asarray(points, np.float64) @ OPENCV_TO_BLENDER).astype(np.float32)


def _build_scene(spec: SequenceSpec, model: FaceModel, samples: int):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    _configure_render(scene, spec, samples)
    _add_camera(scene, spec)
    _add_world(scene, spec)
    _add_sun(scene, spec)
    materials = {MATERIAL_SKIN: _skin_material(spec.skin_tone),
                 MATERIAL_SCLERA: _flat_material("sclera", SCLERA_COLOUR, 0.2),
                 MATERIAL_IRIS: _flat_material("iris", IRIS_COLOUR, 0.3)}
    head = _add_mesh(scene, "head", model.neutral, model.triangles, [materials[i] for i in sorted(materials)],
                     model.triangle_material)
    rest = head.data.attributes.new(REST_ATTRIBUTE, "FLOAT_VECTOR", "POINT")
    rest.data.foreach_set("vector", _to_blender(model.neutral).ravel())
    occluder = None
    if spec.occluder is not None:
        colour = (*spec.occluder.colour, 1.0)
        occluder = _add_mesh(scene, "occluder", spec.occluder.corners(0), BOX_TRIANGLES,
                             [_flat_material("occluder", colour, 0.6)], np.zeros(len(BOX_TRIANGLES), int))
    return head, occluder


def _configure_render(scene, spec: SequenceSpec, samples: int) -> None:
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 3
    scene.cycles.seed = spec.seed
    scene.render.resolution_x = scene.render.resolution_y = spec.image_size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.view_settings.view_transform = "Standard"


def _add_camera(scene, spec: SequenceSpec) -> None:
    camera = bpy.data.cameras.new("camera")
    camera.sensor_fit = "HORIZONTAL"
    camera.sensor_width = SENSOR_WIDTH_MM
    camera.lens = spec.focal_px * SENSOR_WIDTH_MM / spec.image_size
    camera.clip_start, camera.clip_end = 0.01, 100.0
    obj = bpy.data.objects.new("camera", camera)
    scene.collection.objects.link(obj)
    scene.camera = obj


def _add_world(scene, spec: SequenceSpec) -> None:
    """The camera sees the background colour; the face is lit by a uniform white ambient."""
    world = bpy.data.worlds.new("world")
    scene.world = world
    nodes, links = world.node_tree.nodes, world.node_tree.links
    nodes.clear()
    ambient = nodes.new("ShaderNodeBackground")
    ambient.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    ambient.inputs["Strength"].default_value = spec.lighting.ambient_strength
    seen = nodes.new("ShaderNodeBackground")
    seen.inputs["Color"].default_value = (*spec.background, 1.0)
    light_path = nodes.new("ShaderNodeLightPath")
    mix = nodes.new("ShaderNodeMixShader")
    links.new(light_path.outputs["Is Camera Ray"], mix.inputs["Fac"])
    links.new(ambient.outputs["Background"], mix.inputs[1])
    links.new(seen.outputs["Background"], mix.inputs[2])
    output = nodes.new("ShaderNodeOutputWorld")
    links.new(mix.outputs["Shader"], output.inputs["Surface"])


def _add_sun(scene, spec: SequenceSpec) -> None:
    light = bpy.data.lights.new("key", type="SUN")
    light.energy = spec.lighting.key_strength
    light.color = tuple(spec.lighting.key_colour)
    light.angle = 0.1
    # A sun shines along its local -Z: build a rotation whose Z axis is the reverse of the light's travel.
    z_axis = -_to_blender(spec.lighting.key_direction[None])[0].astype(np.float64)
    x_axis = np.cross([0.0, 1.0, 0.0], z_axis)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(z_axis, x_axis)
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack([x_axis, y_axis, z_axis], axis=1)
    obj = bpy.data.objects.new("key", light)
    obj.matrix_world = Matrix(matrix.tolist())
    scene.collection.objects.link(obj)


def _skin_material(skin_tone: np.ndarray):
    """Principled skin outside; a dark cavity colour on back faces (the inside seen through the mouth)."""
    material = bpy.data.materials.new("skin")
    nodes, links = material.node_tree.nodes, material.node_tree.links
    skin = nodes["Principled BSDF"]
    links.new(_skin_texture(nodes, links, skin_tone), skin.inputs["Base Color"])
    skin.inputs["Roughness"].default_value = 0.5
    cavity = nodes.new("ShaderNodeBsdfDiffuse")
    cavity.inputs["Color"].default_value = INTERIOR_COLOUR
    geometry = nodes.new("ShaderNodeNewGeometry")
    mix = nodes.new("ShaderNodeMixShader")
    links.new(geometry.outputs["Backfacing"], mix.inputs["Fac"])
    links.new(skin.outputs["BSDF"], mix.inputs[1])
    links.new(cavity.outputs["BSDF"], mix.inputs[2])
    links.new(mix.outputs["Shader"], nodes["Material Output"].inputs["Surface"])
    return material


def _skin_texture(nodes, links, skin_tone: np.ndarray):
    """Skin colour with fine mottling and pores fixed to the surface (noise over the rest
    positions, so it moves with the skin through expressions): real skin has texture, and the
    appearance stage is scored on following it."""
    rest = nodes.new("ShaderNodeAttribute")
    rest.attribute_name = REST_ATTRIBUTE
    fine, coarse = nodes.new("ShaderNodeTexNoise"), nodes.new("ShaderNodeTexNoise")
    for noise, scale in ((fine, 400.0), (coarse, 60.0)):
        noise.inputs["Scale"].default_value = scale
        noise.inputs["Detail"].default_value = 2.0
        links.new(rest.outputs["Vector"], noise.inputs["Vector"])
    mix = nodes.new("ShaderNodeMath")
    mix.operation = "MULTIPLY_ADD"  # fine * 0.6 + coarse
    mix.inputs[1].default_value = 0.6
    links.new(fine.outputs["Fac"], mix.inputs[0])
    links.new(coarse.outputs["Fac"], mix.inputs[2])
    gain = nodes.new("ShaderNodeMapRange")  # (0.3 .. 1.3) -> (0.7 .. 1.3) times the skin tone
    gain.inputs["From Min"].default_value, gain.inputs["From Max"].default_value = 0.3, 1.3
    gain.inputs["To Min"].default_value, gain.inputs["To Max"].default_value = 0.7, 1.3
    links.new(mix.outputs["Value"], gain.inputs["Value"])
    colour = nodes.new("ShaderNodeVectorMath")
    colour.operation = "SCALE"
    colour.inputs[0].default_value = tuple(float(c) for c in skin_tone)
    links.new(gain.outputs["Result"], colour.inputs["Scale"])
    return colour.outputs["Vector"]


def _flat_material(name: str, colour, roughness: float):
    material = bpy.data.materials.new(name)
    shader = material.node_tree.nodes["Principled BSDF"]
    shader.inputs["Base Color"].default_value = colour
    shader.inputs["Roughness"].default_value = roughness
    return material


def _add_mesh(scene, name: str, vertices: np.ndarray, triangles: np.ndarray, materials, material_index):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(_to_blender(vertices).tolist(), [], np.asarray(triangles).tolist())
    for material in materials:
        mesh.materials.append(material)
    mesh.polygons.foreach_set("material_index", np.asarray(material_index, np.int32))
    mesh.polygons.foreach_set("use_smooth", np.ones(len(triangles), bool))
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    return obj


def _pose_frame(spec: SequenceSpec, model: FaceModel, frame: int, head, occluder) -> None:
    _set_vertices(head.data, spec.posed_vertices(model, frame))
    if occluder is not None:
        _set_vertices(occluder.data, spec.occluder.corners(frame))


def _set_vertices(mesh, points: np.ndarray) -> None:
    mesh.vertices.foreach_set("co", _to_blender(points).ravel())
    mesh.update()


if __name__ == "__main__":
    sys.exit(main())
