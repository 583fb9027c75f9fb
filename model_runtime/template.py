"""The canonical face template: the space every default-backend canonical coordinate lives in.

Space ``faceanything-mp478-v1`` (``contract.CANONICAL_SPACE_ID``):

* One vertex per MediaPipe Face Mesh landmark (478: 468 face points, then the iris centre and
  four ring points of the subject's right eye, 468-472, and left eye, 473-477).
* Metres. +X toward the subject's left (image right on a frontal face), +Y up, +Z out of the
  face (toward a camera the face looks at). Right-handed.
* Origin between the eyes: the midpoint of the two inner eye corners (landmarks 133 and 362).
* Exactly left/right symmetric about x = 0 (``mirror`` pairs the landmarks).
* Frontal: the eye line is +X and the best-fit plane of the face oval (``FACEMESH_FACE_OVAL``,
  hairline, temples, jaw, chin) is perpendicular to +Z, which puts the nose tip about 4 cm in
  front of the origin.
* Size: the pupil centres (468, 473) are 63 mm apart, the mean adult inter-pupillary distance.

The shape is MediaPipe's own 3D landmark output averaged over public-domain portraits shipped by
pip packages; ``python -m model_runtime.build_template`` rebuilds ``data/canonical_face.npz``
reproducibly (see that module for the procedure).

Mesh: the triangles of ``FACEMESH_TESSELATION`` (852, eyes and mouth left open; three quad
diagonals flipped so that the mesh is symmetric too) plus two iris fans of four triangles each,
counter-clockwise seen from outside (normals point out of the face). The face part is a
manifold disk with three holes (the two eye openings and the inner lip contour); each iris fan
is a separate island. UVs come from a cylindrical unwrap (``build_template.cylindrical_uv``);
no two UV triangles overlap.

Named landmarks (``landmarks``), "_L" / "_R" being the subject's left / right:
``eye_{inner,outer}_corner_*``, ``eye_{upper,lower}_lid_*``, ``pupil_*`` (iris centres 473 / 468),
``brow_{inner,mid,outer}_*``, ``nose_wing_*``, ``nostril_*``, ``mouth_corner_*``, ``cheek_*``,
``cheekbone_*``, ``temple_*``, ``jaw_*_1`` .. ``jaw_*_5`` (along the face outline from level with
the ear, 1, down to beside the chin, 5); on the midline ``forehead_top``, ``forehead_center``,
``nose_bridge``, ``nose_tip`` (MediaPipe's landmark 1), ``nose_base``, ``upper_lip_outer``,
``upper_lip_inner``, ``lower_lip_inner``, ``lower_lip_outer``, ``chin``.

``rigid`` lists the landmarks that move with the skull (forehead, nose bridge and tip, eye
corners, cheekbones); head pose is fitted on them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

TEMPLATE_PATH = Path(__file__).resolve().parent / "data" / "canonical_face.npz"


@dataclass(frozen=True)
class FaceTemplate:
    """The canonical face (arrays are read-only; the template is shared)."""

    vertices: np.ndarray  # (478, 3) float64 metres, canonical space
    triangles: np.ndarray  # (F, 3) int32, counter-clockwise seen from outside (outward normals)
    uv: np.ndarray  # (478, 2) float32 in [0, 1], v up
    landmarks: dict[str, int]  # named point -> vertex index; "_L" is the subject's left
    space_id: str
    mirror: np.ndarray  # (478,) int32: the landmark on the other side of the face (itself on x = 0)
    rigid: np.ndarray  # (R,) int32: landmarks that move with the skull (forehead, nose, eye corners, cheekbones)


@lru_cache(maxsize=1)
def load_template() -> FaceTemplate:
    """The shipped template (read once, then cached)."""
    with np.load(TEMPLATE_PATH, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    landmarks = {str(name): int(index) for name, index in zip(arrays["landmark_names"], arrays["landmark_indices"])}
    fields = {
        "vertices": arrays["vertices"].astype(np.float64),
        "triangles": arrays["triangles"].astype(np.int32),
        "uv": arrays["uv"].astype(np.float32),
        "mirror": arrays["mirror"].astype(np.int32),
        "rigid": arrays["rigid"].astype(np.int32),
    }
    for array in fields.values():
        array.setflags(write=False)
    return FaceTemplate(landmarks=landmarks, space_id=str(arrays["space_id"]), **fields)
