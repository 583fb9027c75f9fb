"""Rebuild the canonical face template, ``model_runtime/data/canonical_face.npz``.

Maintainer command, not run by tests or CI (it downloads a wheel)::

    python -m model_runtime.build_template [--wheel-dir DIR] [--output PATH]

The canonical model OBJ of MediaPipe is not in the mediapipe wheel, so the template is fitted
from MediaPipe's own 3D landmarks on frontal public-domain portraits that pip packages ship:

* matplotlib's ``sample_data/grace_hopper.jpg`` (already in the runtime environment);
* scikit-image's ``data/astronaut.png`` (Eileen Collins), read straight out of the wheel that
  ``pip download --no-deps scikit-image==0.26.0`` fetches into a temporary folder; scikit-image
  is never installed.

Each portrait is run through Face Mesh (static image mode, refined landmarks) at a few in-plane
rotations. The shapes are aligned (similarity Procrustes), averaged, made exactly left/right
symmetric, turned frontal and scaled to metres; see ``template.py`` for the resulting space.
The mesh topology comes from ``FACEMESH_TESSELATION``; see :func:`face_triangles`.
"""
from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from model_runtime.contract import CANONICAL_SPACE_ID
from model_runtime.template import TEMPLATE_PATH

SCIKIT_IMAGE_WHEEL = "scikit-image==0.26.0"
ROTATIONS_DEG = (-6.0, -3.0, 0.0, 3.0, 6.0)
INTER_PUPIL_DISTANCE_M = 0.063
"""Mean adult inter-pupillary distance (Dodgson 2004: 63 mm, sd ~3.5 mm, over ~4000 adults)."""

MESH_VERTEX_COUNT = 468
LANDMARK_COUNT = 478
IRIS_R = (468, 469, 470, 471, 472)  # centre, then ring; subject's right (image left)
IRIS_L = (473, 474, 475, 476, 477)

# Named points, subject's right side ("_R", image left on a frontal face). The "_L" names are
# their mirror images, found through the template's symmetry; unpaired names are on the midline.
NAMED_RIGHT = {
    "eye_outer_corner_R": 33,
    "eye_inner_corner_R": 133,
    "eye_upper_lid_R": 159,
    "eye_lower_lid_R": 145,
    "pupil_R": 468,
    "brow_inner_R": 107,
    "brow_mid_R": 105,
    "brow_outer_R": 70,
    "nose_wing_R": 129,
    "nostril_R": 98,
    "mouth_corner_R": 61,
    "cheek_R": 205,
    "cheekbone_R": 116,
    "temple_R": 127,
    "jaw_R_1": 234,
    "jaw_R_2": 132,
    "jaw_R_3": 172,
    "jaw_R_4": 150,
    "jaw_R_5": 176,
}
NAMED_MIDLINE = {
    "forehead_top": 10,
    "forehead_center": 151,
    "nose_bridge": 168,
    "nose_tip": 1,
    "nose_base": 2,
    "upper_lip_outer": 0,
    "upper_lip_inner": 13,
    "lower_lip_inner": 14,
    "lower_lip_outer": 17,
    "chin": 152,
}
# Landmarks that move with the skull, not with the expression: forehead, nose bridge and tip,
# eye corners, cheekbones. Head pose is fitted on these (lips, jaw, lids and brows excluded).
RIGID_MIDLINE = (10, 151, 9, 168, 6, 197, 195, 5, 4, 1)
RIGID_RIGHT = (33, 133, 109, 108, 67, 116, 123, 227)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m model_runtime.build_template", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel-dir", type=Path, help="folder holding (or receiving) the scikit-image wheel")
    parser.add_argument("--output", type=Path, default=TEMPLATE_PATH)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        images = load_source_images(args.wheel_dir or Path(tmp))
        arrays = build(images)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays)
    print(f"wrote {args.output}: {len(arrays['vertices'])} vertices, {len(arrays['triangles'])} triangles")


def build(images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All arrays of the template npz, from RGB portraits."""
    import mediapipe as mp

    connections = mp.solutions.face_mesh
    edges = np.array(sorted({tuple(sorted(e)) for e in connections.FACEMESH_TESSELATION}))
    shapes = detect_shapes(images)
    mean = procrustes_mean(shapes)
    mean = rough_frontal(mean)
    mirror = mirror_map(mean, edges)
    oval = np.unique(np.array(list(connections.FACEMESH_FACE_OVAL)))
    vertices = to_canonical_space(symmetrise(mean, mirror), oval)
    triangles = face_triangles(edges, vertices, mirror)
    triangles = np.concatenate([triangles, iris_fans(vertices)])
    landmarks = named_landmarks(mirror)
    rigid = np.array(sorted(set(RIGID_MIDLINE) | set(RIGID_RIGHT) | {int(mirror[i]) for i in RIGID_RIGHT}))
    uv = cylindrical_uv(vertices, oval)
    verify(vertices, triangles, uv, mirror, connections)
    names = sorted(landmarks)
    return {
        "vertices": vertices,
        "triangles": triangles.astype(np.int32),
        "uv": uv.astype(np.float32),
        "landmark_names": np.array(names),
        "landmark_indices": np.array([landmarks[n] for n in names], np.int32),
        "mirror": mirror.astype(np.int32),
        "rigid": rigid.astype(np.int32),
        "space_id": np.array(CANONICAL_SPACE_ID),
        "sources": np.array(sorted(images)),
    }


# --- source images -------------------------------------------------------------------------


def load_source_images(wheel_dir: Path) -> dict[str, np.ndarray]:
    import matplotlib

    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return {"grace_hopper": read_rgb(hopper.read_bytes()), "astronaut": read_rgb(astronaut_png(wheel_dir))}


def astronaut_png(wheel_dir: Path) -> bytes:
    wheels = sorted(wheel_dir.glob("scikit_image-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        SCIKIT_IMAGE_WHEEL, "-d", str(wheel_dir)], check=True)
        wheels = sorted(wheel_dir.glob("scikit_image-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        return wheel.read("skimage/data/astronaut.png")


def read_rgb(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --- shape fitting ----------------------------------------------------------------------------


def detect_shapes(images: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Face Mesh landmarks of every image at every rotation, as (478, 3) shapes in pixels with
    +Y up and +Z toward the camera (out of the face)."""
    import mediapipe as mp

    shapes = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        for name, image in images.items():
            height, width = image.shape[:2]
            for angle in ROTATIONS_DEG:
                rotation = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
                rotated = cv2.warpAffine(image, rotation, (width, height), flags=cv2.INTER_CUBIC,
                                         borderMode=cv2.BORDER_REFLECT)
                result = mesh.process(rotated)
                if not result.multi_face_landmarks:
                    raise RuntimeError(f"Face Mesh found no face in {name} rotated by {angle} degrees")
                points = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark])
                shapes.append(points * [width, -height, -width])
    return shapes


def similarity_align(source: np.ndarray, target: np.ndarray, scale: bool = True) -> np.ndarray:
    """``source`` moved by the rotation, translation (and scale) that best fits ``target``."""
    source_mean, target_mean = source.mean(0), target.mean(0)
    a, b = source - source_mean, target - target_mean
    u, s, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, 1.0, d]) @ vt
    factor = (s * [1.0, 1.0, d]).sum() / (a**2).sum() if scale else 1.0
    return factor * a @ rotation + target_mean


def procrustes_mean(shapes: list[np.ndarray], iterations: int = 10) -> np.ndarray:
    """Generalised Procrustes: the mean shape after aligning every shape to it (similarity)."""
    mean = shapes[0] - shapes[0].mean(0)
    for _ in range(iterations):
        mean = np.mean([similarity_align(s, mean) for s in shapes], axis=0)
        mean = (mean - mean.mean(0)) / np.sqrt((mean**2).sum() / len(mean)) * 100.0
    return mean


def rotation_to(x_axis: np.ndarray, y_hint: np.ndarray) -> np.ndarray:
    """Rows: an orthonormal frame whose X is ``x_axis`` and whose Y is closest to ``y_hint``."""
    x = x_axis / np.linalg.norm(x_axis)
    y = y_hint - (y_hint @ x) * x
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)])


def rough_frontal(shape: np.ndarray) -> np.ndarray:
    """Eye line (outer corners) along +X, chin-to-forehead roughly +Y."""
    frame = rotation_to(shape[263] - shape[33], shape[10] - shape[152])
    return (shape - shape.mean(0)) @ frame.T


def mirror_map(shape: np.ndarray, edges: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Left/right landmark pairs: ``mirror[i]`` is the landmark on the other side of the face
    (itself on the midline). Found by reflecting the shape in x, aligning the reflection rigidly
    and matching nearest neighbours one-to-one; checked to be an involution that maps the
    tessellation onto itself except for quads whose diagonal MediaPipe chose differently on the
    two sides."""
    reflected = shape * [-1.0, 1.0, 1.0]
    moved = reflected
    for _ in range(iterations):
        mirror = np.empty(len(shape), int)
        for group in (np.arange(MESH_VERTEX_COUNT), np.arange(MESH_VERTEX_COUNT, LANDMARK_COUNT)):
            cost = np.linalg.norm(shape[group][:, None] - moved[group][None], axis=2)
            rows, cols = linear_sum_assignment(cost)
            mirror[group[rows]] = group[cols]
        moved = similarity_align(reflected, shape[mirror], scale=False)
    if not np.array_equal(mirror[mirror], np.arange(len(mirror))):
        raise RuntimeError("left/right landmark matching is not an involution")
    edge_set = {tuple(e) for e in edges.tolist()}
    neighbours = neighbour_sets(edges)
    for a, b in edges.tolist():
        if tuple(sorted((mirror[a], mirror[b]))) in edge_set:
            continue
        opposite = sorted(neighbours[a] & neighbours[b])
        if len(opposite) != 2 or tuple(sorted(int(mirror[v]) for v in opposite)) not in edge_set:
            raise RuntimeError(f"left/right landmark matching breaks the tessellation at edge {a}-{b}")
    return mirror


def neighbour_sets(edges: np.ndarray) -> list[set[int]]:
    neighbours = [set() for _ in range(MESH_VERTEX_COUNT)]
    for a, b in edges.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    return neighbours


def symmetrise(shape: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """The shape averaged with its own mirror image, turned so that its symmetry plane is x = 0,
    then made exactly symmetric: x[mirror[i]] = -x[i], y and z equal."""
    reflected = similarity_align(shape * [-1.0, 1.0, 1.0], shape[mirror], scale=False)[mirror]
    average = (shape + reflected) / 2
    pair_directions = average - average[mirror]
    _, _, vt = np.linalg.svd(pair_directions, full_matrices=False)
    normal = vt[0] * np.sign(vt[0] @ (average[263] - average[33]))
    midpoints = (average + average[mirror]) / 2
    frame = rotation_to(normal, average[10] - average[152])
    turned = (average - midpoints.mean(0)) @ frame.T
    return (turned + turned[mirror] * [-1.0, 1.0, 1.0]) / 2


def to_canonical_space(shape: np.ndarray, face_oval: np.ndarray) -> np.ndarray:
    """Pitch so that the face oval's best-fit plane faces +Z, origin between the inner eye
    corners, metres by the inter-pupil distance."""
    points = shape[face_oval][:, 1:] - shape[face_oval][:, 1:].mean(0)
    _, _, vt = np.linalg.svd(points, full_matrices=False)
    normal_yz = vt[-1] * np.sign(vt[-1][1])  # the oval plane's normal in the y-z plane, +z side
    angle = np.arctan2(normal_yz[0], normal_yz[1])  # tilt of that normal toward +Y
    c, s = np.cos(angle), np.sin(angle)
    pitched = shape @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]]).T
    origin = (pitched[133] + pitched[362]) / 2
    scale = INTER_PUPIL_DISTANCE_M / np.linalg.norm(pitched[468] - pitched[473])
    return (pitched - origin) * scale


# --- topology ---------------------------------------------------------------------------------


def face_triangles(edges: np.ndarray, vertices: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Triangles of the 468-point face mesh, outward facing, eyes and mouth open, symmetric.

    ``FACEMESH_TESSELATION`` lists the edges of MediaPipe's open face mesh (eyes and mouth are
    already holes). Every triangle is a 3-clique of that edge graph, but a few 3-cliques are not
    triangles: three edges that each bound two real triangles around a vertex. Dropping the
    cliques whose three edges are all over-used leaves a manifold mesh."""
    neighbours = neighbour_sets(edges)
    cliques = sorted({tuple(sorted((a, b, c))) for a, b in edges.tolist() for c in neighbours[a] & neighbours[b]})
    use: dict[tuple[int, int], int] = {}
    for tri in cliques:
        for edge in itertools.combinations(tri, 2):
            use[edge] = use.get(edge, 0) + 1
    triangles = [t for t in cliques if not all(use[e] > 2 for e in itertools.combinations(t, 2))]
    return orient_outward(symmetric_diagonals(triangles, vertices, mirror), vertices)


def symmetric_diagonals(triangles: list[tuple[int, int, int]], vertices: np.ndarray,
                        mirror: np.ndarray) -> np.ndarray:
    """Flip the quad diagonals MediaPipe chose differently on the two sides of the face so that
    the mirror image of every triangle is a triangle; each such pair of quads gets the shorter
    diagonal."""
    faces = {tuple(sorted(t)) for t in triangles}
    asymmetric = sorted(t for t in faces if tuple(sorted(mirror[list(t)])) not in faces)
    by_edge: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for tri in asymmetric:
        for edge in itertools.combinations(tri, 2):
            by_edge.setdefault(edge, []).append(tri)
    for (a, b), pair in by_edge.items():
        if len(pair) != 2:
            continue
        c, d = sorted((set(pair[0]) | set(pair[1])) - {a, b})
        if np.linalg.norm(vertices[a] - vertices[b]) > np.linalg.norm(vertices[c] - vertices[d]):
            faces -= set(pair)
            faces |= {tuple(sorted((c, d, a))), tuple(sorted((c, d, b)))}
    if any(tuple(sorted(mirror[list(t)])) not in faces for t in faces):
        raise RuntimeError("could not make the triangulation symmetric")
    return np.array(sorted(faces))


def orient_outward(triangles: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Consistent winding (neighbours traverse their shared edge in opposite directions), chosen
    so that the area-weighted normal points +Z."""
    triangles = triangles.copy()
    by_edge: dict[tuple[int, int], list[int]] = {}
    for index, tri in enumerate(triangles):
        for a, b in ((0, 1), (1, 2), (2, 0)):
            by_edge.setdefault(tuple(sorted((tri[a], tri[b]))), []).append(index)
    done = np.zeros(len(triangles), bool)
    for seed in range(len(triangles)):
        if done[seed]:
            continue
        done[seed] = True
        stack = [seed]
        while stack:
            current = stack.pop()
            tri = triangles[current]
            for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])):
                for other in by_edge[tuple(sorted((a, b)))]:
                    if done[other]:
                        continue
                    if any((o1, o2) == (a, b) for o1, o2 in zip(triangles[other], np.roll(triangles[other], -1))):
                        triangles[other] = triangles[other][::-1]
                    done[other] = True
                    stack.append(other)
    if triangle_normals(vertices, triangles)[:, 2].sum() < 0:
        triangles = triangles[:, ::-1]
    return np.ascontiguousarray(triangles)


def iris_fans(vertices: np.ndarray) -> np.ndarray:
    """Four triangles per iris, centre to consecutive ring points, facing +Z."""
    fans = []
    for centre, *ring in (IRIS_R, IRIS_L):
        ring = np.array(ring)
        offsets = vertices[ring, :2] - vertices[centre, :2]
        ring = ring[np.argsort(np.arctan2(offsets[:, 1], offsets[:, 0]))]  # counter-clockwise from +Z
        fans += [(centre, a, b) for a, b in zip(ring, np.roll(ring, -1))]
    return np.array(fans)


def triangle_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unnormalised (area-weighted) normals."""
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    return np.cross(b - a, c - a)


def signed_areas(points2d: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area of each 2D triangle, positive when counter-clockwise."""
    a, b, c = (points2d[triangles[:, k]] for k in range(3))
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def named_landmarks(mirror: np.ndarray) -> dict[str, int]:
    names = dict(NAMED_MIDLINE)
    for name, index in NAMED_RIGHT.items():
        names[name] = index
        names[name.replace("_R", "_L")] = int(mirror[index])
    return names


# --- texture coordinates ----------------------------------------------------------------------


def cylindrical_uv(vertices: np.ndarray, face_oval: np.ndarray, margin: float = 0.02) -> np.ndarray:
    """Texture coordinates from a vertical cylinder fitted to the face oval (axis on x = 0, behind
    the face): u is arc length around the cylinder, v is height, both at one scale so the front
    of the face is not stretched, fitted into [margin, 1 - margin] and centred. The iris islands
    lie inside the eye openings, shrunk to half size so that they do not overlap the lids."""
    x, z = vertices[face_oval, 0], vertices[face_oval, 2]
    # x^2 + (z - c)^2 = r^2 is linear in (2c, r^2 - c^2)
    (twice_centre, rest), *_ = np.linalg.lstsq(np.stack([z, np.ones_like(z)], 1), x**2 + z**2, rcond=None)
    centre = twice_centre / 2
    radius = np.sqrt(rest + centre**2)
    angle = np.arctan2(vertices[:, 0], vertices[:, 2] - centre)
    flat = np.stack([angle * radius, vertices[:, 1]], axis=1)
    for iris_centre, *ring in (IRIS_R, IRIS_L):
        flat[ring] = flat[iris_centre] + (flat[ring] - flat[iris_centre]) * 0.5
    low, high = flat.min(0), flat.max(0)
    return (flat - (low + high) / 2) / (high - low).max() * (1 - 2 * margin) + 0.5


# --- checks -----------------------------------------------------------------------------------


def verify(vertices, triangles, uv, mirror, connections) -> None:
    """Raise if the template breaks a property the runtime relies on."""
    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    if counts.max() > 2:
        raise RuntimeError("triangulation is not manifold")
    directed = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    if len(np.unique(directed, axis=0)) != len(directed):
        raise RuntimeError("triangulation is not consistently oriented")
    if (signed_areas(uv.astype(np.float64), triangles) <= 0).any():
        raise RuntimeError("texture coordinates fold over")
    covered = {tuple(sorted(e)) for e in edges.tolist()}
    for loop in (connections.FACEMESH_LEFT_EYE, connections.FACEMESH_RIGHT_EYE):
        if any(tuple(sorted(e)) not in covered for e in loop):
            raise RuntimeError("an eye contour is not part of the mesh")
    if not np.allclose(vertices[mirror] * [-1, 1, 1], vertices):
        raise RuntimeError("template is not symmetric")


if __name__ == "__main__":
    main()
