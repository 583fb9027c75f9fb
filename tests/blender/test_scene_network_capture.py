"""A capture made by the Face Anything backend (the real runtime, the `small` structure with random
weights standing in for the released checkpoint) builds a scene like the default backend's."""
from __future__ import annotations

import json
import subprocess

import bpy
import numpy as np

from conftest import REPO
from faceanything_blender.scene import build_capture

NETWORK_OPTIONS = {"size": "small", "resolution": 84, "window": 2, "overlap": 1, "mask_confidence": 0.0,
                   "align_to_template": False}
WRITE_WEIGHTS = "import sys, pathlib; from tests.fixtures.network_weights import write_random_weights; " \
                "print(write_random_weights(pathlib.Path(sys.argv[1])))"


def network_capture(runtime_python, clip, folder):
    weights = subprocess.run([str(runtime_python), "-c", WRITE_WEIGHTS, str(folder)], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
    options = [f"--backend-option={key}={json.dumps(value)}" for key, value in NETWORK_OPTIONS.items()]
    command = [str(runtime_python), "-m", "model_runtime", "capture", str(clip), "-o", str(folder / "cap"),
               "--frames", "1:3", "--backend", "faceanything", "--device", "cpu", "--checkpoint", weights,
               *options, "--reconstruct", "--mesh", "dense"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "cap"


def test_a_network_capture_builds_a_scene(scene, real_runtime_python, face_clip, tmp_path):
    capture_dir = network_capture(real_runtime_python, face_clip, tmp_path)
    made = build_capture(scene, capture_dir, footage=str(face_clip))
    mesh = bpy.data.objects[made["mesh"]]
    assert len(mesh.data.vertices) > 100 and mesh.modifiers[0].type == "MESH_CACHE"
    assert (scene.render.resolution_x, scene.render.resolution_y) == (640, 360)  # the sample clip's size
    assert scene.frame_end - scene.frame_start + 1 == 3
    scene.frame_set(scene.frame_start + 1)
    evaluated = mesh.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    positions = np.empty(len(evaluated.vertices) * 3)
    evaluated.vertices.foreach_get("co", positions)
    assert np.isfinite(positions).all() and np.ptp(positions) > 0
