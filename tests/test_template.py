"""The shipped canonical face template: shape, topology, texture coordinates, names."""
from __future__ import annotations

import re

import mediapipe as mp
import numpy as np
import pytest

from model_runtime import build_template
from model_runtime.contract import CANONICAL_SPACE_ID
from model_runtime.template import load_template

CONNECTIONS = mp.solutions.face_mesh
TESSELATION_EDGES = np.array(sorted({tuple(sorted(e)) for e in CONNECTIONS.FACEMESH_TESSELATION}))


def vertex_set(connections) -> set[int]:
    return {v for edge in connections for v in edge}


def loops(connections) -> list[set[int]]:
    """Vertex sets of the closed loops a set of edges forms."""
    neighbours: dict[int, set[int]] = {}
    for a, b in connections:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    found, seen = [], set()
    for start in neighbours:
        if start in seen:
            continue
        component, stack = set(), [start]
        while stack:
            vertex = stack.pop()
            if vertex not in component:
                component.add(vertex)
                stack.extend(neighbours[vertex] - component)
        seen |= component
        found.append(component)
    return found


def inner_lip_loop(template) -> set[int]:
    """The narrower of the two lip contours."""
    return min(loops(CONNECTIONS.FACEMESH_LIPS), key=lambda loop: np.ptp(template.vertices[list(loop), 0]))


def undirected_edges(triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
    return np.unique(edges, axis=0, return_counts=True)


def signed_area_2d(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = (points[triangles[:, k]] for k in range(3))
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


@pytest.fixture(scope="module")
def template():
    return load_template()


def test_arrays_have_the_documented_layout(template):
    assert template.space_id == CANONICAL_SPACE_ID
    assert template.vertices.shape == (478, 3) and template.vertices.dtype == np.float64
    assert template.triangles.dtype == np.int32 and template.triangles.shape[1] == 3
    assert template.triangles.min() == 0 and template.triangles.max() == 477
    assert template.uv.shape == (478, 2) and template.uv.dtype == np.float32
    assert template.uv.min() >= 0.0 and template.uv.max() <= 1.0
    assert load_template() is template
    with pytest.raises(ValueError):
        template.vertices[0, 0] = 1.0  # shared, read-only


def test_triangulation_is_manifold_and_consistently_oriented(template):
    _, counts = undirected_edges(template.triangles)
    assert counts.max() == 2
    tri = template.triangles
    directed = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed), "a directed edge is used twice: winding flips"
    face = template.triangles[(template.triangles < 468).all(axis=1)]
    edges, _ = undirected_edges(face)
    assert 468 - len(edges) + len(face) == 1 - 3, "the face should be a disk with three holes"


def test_boundary_is_face_outline_eyes_mouth_and_iris_rims(template):
    edges, counts = undirected_edges(template.triangles)
    boundary = loops(edges[counts == 1].tolist())
    inner_lip = inner_lip_loop(template)
    expected = [
        vertex_set(CONNECTIONS.FACEMESH_FACE_OVAL),
        vertex_set(CONNECTIONS.FACEMESH_LEFT_EYE),
        vertex_set(CONNECTIONS.FACEMESH_RIGHT_EYE),
        inner_lip,
        {469, 470, 471, 472},
        {474, 475, 476, 477},
    ]
    assert len(boundary) == 6
    assert sorted(map(sorted, boundary)) == sorted(map(sorted, expected))
    assert {13, 14, 78, 308} <= inner_lip


def test_no_triangle_covers_the_eyes_or_the_mouth(template):
    openings = [vertex_set(CONNECTIONS.FACEMESH_LEFT_EYE), vertex_set(CONNECTIONS.FACEMESH_RIGHT_EYE),
                inner_lip_loop(template)]
    for tri in template.triangles.tolist():
        assert not any(set(tri) <= opening for opening in openings), tri


def test_face_triangles_are_the_tessellation(template):
    face = template.triangles[(template.triangles < 468).all(axis=1)]
    edges, _ = undirected_edges(face)
    tessellation = {tuple(e) for e in TESSELATION_EDGES.tolist()}
    differing = tessellation ^ {tuple(e) for e in edges.tolist()}
    assert len(face) == 852
    assert len(differing) <= 12, "only a few quad diagonals are flipped for symmetry"


def test_normals_point_out_of_the_face(template):
    v, tri = template.vertices, template.triangles
    a, b, c = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]
    normals = np.cross(b - a, c - a)
    away_from_head_centre = (normals * ((a + b + c) / 3 - [0.0, -0.03, -0.08])).sum(axis=1) > 0
    assert normals[:, 2].sum() > 0.5 * np.linalg.norm(normals, axis=1).sum()
    assert away_from_head_centre.mean() > 0.99
    irises = tri[(tri >= 468).all(axis=1)]
    assert len(irises) == 8
    assert (np.cross(v[irises[:, 1]] - v[irises[:, 0]], v[irises[:, 2]] - v[irises[:, 0]])[:, 2] > 0).all()


def test_uv_triangles_do_not_fold_or_overlap(template):
    uv = template.uv.astype(np.float64)
    tri = template.triangles
    assert (signed_area_2d(uv, tri) > 0).all(), "every UV triangle keeps the outward orientation"
    corners = uv[tri]  # (F, 3, 2)
    low, high = corners.min(axis=1), corners.max(axis=1)
    i, j = np.triu_indices(len(tri), 1)
    boxes_meet = ((low[i] < high[j]) & (low[j] < high[i])).all(axis=1)
    i, j = i[boxes_meet], j[boxes_meet]
    # Separating axis theorem: two triangles' interiors are disjoint iff the normal of one of
    # their six edges separates them (touching at a shared vertex or edge is allowed).
    separated = np.zeros(len(i), bool)
    for first, second in ((i, j), (j, i)):
        for k in range(3):
            edge = corners[first, (k + 1) % 3] - corners[first, k]
            axis = np.stack([-edge[:, 1], edge[:, 0]], axis=1)
            own = np.einsum("nkd,nd->nk", corners[first], axis)
            other = np.einsum("nkd,nd->nk", corners[second], axis)
            separated |= (other.min(axis=1) >= own.max(axis=1) - 1e-9) | (other.max(axis=1) <= own.min(axis=1) + 1e-9)
    assert len(i) > 1000 and separated.all(), "UV triangles overlap"


def test_template_is_symmetric(template):
    mirror = template.mirror
    assert np.array_equal(mirror[mirror], np.arange(478))
    np.testing.assert_allclose(template.vertices[mirror] * [-1, 1, 1], template.vertices, atol=1e-12)
    midline = mirror == np.arange(478)
    assert (template.vertices[midline, 0] == 0).all()
    assert (template.vertices[~midline, 0] != 0).all()
    faces = {tuple(sorted(t)) for t in template.triangles.tolist()}
    assert {tuple(sorted(mirror[t])) for t in template.triangles.tolist()} == faces


def test_template_has_an_adult_face_size_in_metres(template):
    v, names = template.vertices, template.landmarks
    assert np.linalg.norm(v[names["pupil_L"]] - v[names["pupil_R"]]) == pytest.approx(0.063)
    np.testing.assert_allclose((v[names["eye_inner_corner_L"]] + v[names["eye_inner_corner_R"]]) / 2, 0, atol=1e-12)
    assert 0.08 < np.linalg.norm(v[names["eye_outer_corner_L"]] - v[names["eye_outer_corner_R"]]) < 0.10
    assert 0.14 < v[names["forehead_top"], 1] - v[names["chin"], 1] < 0.19
    assert 0.12 < np.ptp(v[:, 0]) < 0.16
    assert 0.025 < v[names["nose_tip"], 2] < 0.05, "the nose tip stands out of the face (+Z)"
    assert v[names["nose_tip"], 2] > v[:, 2].max() - 0.003, "the nose tip is (about) the most forward point"


def test_named_landmarks(template):
    v, names, mirror = template.vertices, template.landmarks, template.mirror
    required = ["eye_inner_corner_L", "eye_outer_corner_R", "eye_upper_lid_L", "eye_lower_lid_R", "pupil_L",
                "pupil_R", "brow_inner_L", "brow_mid_R", "brow_outer_L", "nose_tip", "nose_wing_L", "nose_wing_R",
                "mouth_corner_L", "mouth_corner_R", "upper_lip_outer", "upper_lip_inner", "lower_lip_inner",
                "lower_lip_outer", "chin", "forehead_center", "jaw_L_1", "jaw_R_5"]
    assert set(required) <= set(names)
    assert (names["pupil_L"], names["pupil_R"]) == (473, 468)
    assert (names["mouth_corner_L"], names["mouth_corner_R"]) == (291, 61)
    for name, index in names.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*(_[LR](_\d)?)?", name), name
        if "_L" in name:
            assert v[index, 0] > 0, f"{name} is on the subject's left, +X"
            assert names[name.replace("_L", "_R")] == mirror[index]
        elif "_R" in name:
            assert v[index, 0] < 0
        else:
            assert v[index, 0] == 0, f"{name} is on the midline"
    for side in "LR":
        def at(name):
            return v[names[f"{name}_{side}"]]
        assert abs(at("eye_outer_corner")[0]) > abs(at("pupil")[0]) > abs(at("eye_inner_corner")[0])
        assert at("eye_upper_lid")[1] > at("pupil")[1] > at("eye_lower_lid")[1]
        assert at("brow_mid")[1] > at("eye_upper_lid")[1]
        assert abs(at("brow_outer")[0]) > abs(at("brow_mid")[0]) > abs(at("brow_inner")[0])
        jaw = [v[names[f"jaw_{side}_{k}"], 1] for k in range(1, 6)]
        assert jaw == sorted(jaw, reverse=True), "jaw points run from the ear down to the chin"
    assert (v[names["upper_lip_outer"], 1] > v[names["upper_lip_inner"], 1]
            >= v[names["lower_lip_inner"], 1] > v[names["lower_lip_outer"], 1] > v[names["chin"], 1])
    assert v[names["chin"], 1] == v[:, 1].min()
    assert v[names["forehead_center"], 1] > v[names["brow_inner_L"], 1]


def test_rigid_landmarks_leave_out_the_moving_parts(template):
    lids = vertex_set(CONNECTIONS.FACEMESH_LEFT_EYE) | vertex_set(CONNECTIONS.FACEMESH_RIGHT_EYE)
    brows = vertex_set(CONNECTIONS.FACEMESH_LEFT_EYEBROW) | vertex_set(CONNECTIONS.FACEMESH_RIGHT_EYEBROW)
    moving = vertex_set(CONNECTIONS.FACEMESH_LIPS) | (lids - {33, 133, 263, 362}) | brows
    rigid = set(template.rigid.tolist())
    assert len(rigid) >= 20
    assert not rigid & moving
    assert {33, 133, 263, 362, 1, 168} <= rigid
    assert (template.vertices[list(rigid), 1] > template.vertices[template.landmarks["nose_base"], 1] - 0.01).all(), \
        "nothing from the mouth or jaw"
    assert set(template.mirror[list(rigid)].tolist()) == rigid


def test_build_steps_reproduce_the_shipped_topology_and_uv(template):
    """The deterministic half of `python -m model_runtime.build_template` (the fit needs a
    download): from the shipped shape it rebuilds the same pairs, triangles and UVs."""
    vertices = template.vertices
    mirror = build_template.mirror_map(vertices, TESSELATION_EDGES)
    assert np.array_equal(mirror, template.mirror)
    face = build_template.face_triangles(TESSELATION_EDGES, vertices, mirror)
    shipped_face = template.triangles[(template.triangles < 468).all(axis=1)]
    assert {tuple(t) for t in face.tolist()} == {tuple(t) for t in shipped_face.tolist()}
    oval = np.unique(np.array(list(CONNECTIONS.FACEMESH_FACE_OVAL)))
    np.testing.assert_allclose(build_template.cylindrical_uv(vertices, oval), template.uv, atol=1e-6)
