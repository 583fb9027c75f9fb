"""Mesh building: template subdivision, dense seeding on a frame, rigid vertices."""
import numpy as np
import pytest

from model_runtime.contract import FrameMaps
from model_runtime.errors import UserError
from model_runtime.reconstruct.mesh import DENSE_VERTEX_TARGETS, Mesh, dense_mesh, rigid_vertices, subdivide, template_mesh
from model_runtime.template import load_template
from tests.fixtures.synthetic import SyntheticClip, synthetic_template


def triangle_normals(points, triangles):
    a, b, c = (points[triangles[:, i]] for i in range(3))
    return np.cross(b - a, c - a)


def edge_use_counts(triangles):
    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
    return np.unique(edges, axis=0, return_counts=True)[1]


def test_subdivide_splits_each_triangle_into_four_at_shared_midpoints():
    template = synthetic_template()
    mesh = Mesh(template.vertices, template.triangles, template.uv)
    edge_count = len(edge_use_counts(mesh.triangles))
    finer = subdivide(mesh)
    assert finer.vertex_count == mesh.vertex_count + edge_count
    assert len(finer.triangles) == 4 * len(mesh.triangles)
    np.testing.assert_array_equal(finer.canonical[: mesh.vertex_count], mesh.canonical)
    # Still a manifold: no edge is used by more than two triangles (midpoints are shared).
    assert edge_use_counts(finer.triangles).max() == 2
    # Orientation kept: every child faces the way its parent does (+Z, out of the face).
    assert (triangle_normals(finer.canonical, finer.triangles)[:, 2] > 0).all()


def test_subdivide_interpolates_uvs_and_positions_at_midpoints():
    mesh = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.5]], float), np.array([[0, 1, 2]], np.int32), np.array([[0, 0], [1, 0], [0, 1]], np.float32))
    finer = subdivide(mesh)
    midpoints = {tuple(np.round(p, 6)): tuple(np.round(uv, 6)) for p, uv in zip(finer.canonical[3:], finer.uv[3:])}
    assert midpoints == {(0.5, 0.0, 0.0): (0.5, 0.0), (0.0, 0.5, 0.25): (0.0, 0.5), (0.5, 0.5, 0.25): (0.5, 0.5)}


def test_template_densities_match_the_documented_sizes():
    template = load_template()
    sizes = {density: template_mesh(template, density).vertex_count for density in ("low", "medium", "high")}
    assert sizes["low"] == 478
    assert 1500 <= sizes["medium"] <= 2500
    assert 6000 <= sizes["high"] <= 9000
    high = template_mesh(template, "high")
    assert high.uv.min() >= 0 and high.uv.max() <= 1
    np.testing.assert_array_equal(high.canonical[:478], template.vertices)


@pytest.mark.parametrize("density", ["low", "medium"])
def test_dense_mesh_hits_its_vertex_target_with_outward_triangles(density):
    clip = SyntheticClip(size=(480, 400), focal=800.0)
    maps = clip.render(0)
    mesh = dense_mesh(maps, density, 0)
    assert 0.6 * DENSE_VERTEX_TARGETS[density] <= mesh.vertex_count <= 1.3 * DENSE_VERTEX_TARGETS[density]
    assert (triangle_normals(mesh.canonical, mesh.triangles)[:, 2] > 0).mean() > 0.99
    assert edge_use_counts(mesh.triangles).max() == 2
    # UVs are the frame's normalised pixel positions: they project back onto the seeded pixels.
    width, height = maps.frame_size
    pixels = np.stack([mesh.uv[:, 0] * width - 0.5, (1 - mesh.uv[:, 1]) * height - 0.5], axis=1)
    cols = np.round(pixels[:, 0]).astype(int) - maps.window[0]
    rows = np.round(pixels[:, 1]).astype(int) - maps.window[1]
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)
    assert maps.mask[rows, cols].all()
    np.testing.assert_allclose(mesh.canonical, maps.canonical[rows, cols], atol=1e-6)


def test_dense_mesh_drops_triangles_across_a_depth_discontinuity():
    height, width = 60, 80
    rows, cols = np.mgrid[0:height, 0:width]
    canonical = np.stack([cols * 0.001, -rows * 0.001, np.zeros_like(cols, float)], axis=-1)
    canonical[:, width // 2 :, 0] += 0.05  # the right half is another part of the face (the nose in front of a cheek)
    ones = np.ones((height, width), np.float32)
    maps = FrameMaps(ones * 0.5, canonical.astype(np.float32), ones, ones, ones.astype(bool), np.eye(3), (width, height), (0, 0, width, height))
    mesh = dense_mesh(maps, "low", 0)
    side = mesh.canonical[:, 0] > 0.0395 + 0.025
    assert side.any() and (~side).any()
    crossing = side[mesh.triangles].any(axis=1) & ~side[mesh.triangles].all(axis=1)
    assert not crossing.any()


def test_dense_mesh_needs_a_face():
    maps = FrameMaps.empty(np.eye(3), (64, 48))
    with pytest.raises(UserError, match="frame 7 has no face"):
        dense_mesh(maps, "medium", 7)


def test_rigid_vertices_surround_the_templates_rigid_landmarks():
    template = load_template()
    mesh = template_mesh(template, "medium")
    rigid = rigid_vertices(mesh, template)
    assert rigid[template.rigid].all()
    assert rigid.sum() > 2 * len(template.rigid)
    assert not rigid[template.landmarks["chin"]] and not rigid[template.landmarks["mouth_corner_L"]]
    assert rigid_vertices(mesh, None) is None
