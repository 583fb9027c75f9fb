"""The numpy rasteriser against a brute-force reference and analytic geometry."""
from __future__ import annotations

import numpy as np
import pytest

from model_runtime import raster
from model_runtime.raster import mesh_window, rasterize


def brute_force(points2d, depth, triangles, window, attributes):
    """Every triangle against every pixel centre, one triangle at a time."""
    x0, y0, x1, y1 = window
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    nearest = np.full(xs.shape, np.inf)
    triangle = np.full(xs.shape, -1)
    values = np.zeros(xs.shape + (attributes.shape[1],))
    for index, (i, j, k) in enumerate(triangles):
        (ax, ay), (bx, by), (cx, cy) = points2d[i], points2d[j], points2d[k]
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if abs(area) < 1e-12 or min(depth[i], depth[j], depth[k]) <= 0:
            continue
        w1 = ((xs - ax) * (cy - ay) - (ys - ay) * (cx - ax)) / area
        w2 = ((bx - ax) * (ys - ay) - (by - ay) * (xs - ax)) / area
        w0 = 1 - w1 - w2
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        inverse = w0 / depth[i] + w1 / depth[j] + w2 / depth[k]
        z = 1 / inverse
        closer = inside & (z < nearest)
        nearest[closer] = z[closer]
        triangle[closer] = index
        weights = np.stack([w0 / depth[i], w1 / depth[j], w2 / depth[k]], axis=-1) * z[..., None]
        values[closer] = (weights @ attributes[[i, j, k]])[closer]
    return triangle, np.where(np.isinf(nearest), 0, nearest), values


def random_mesh(seed: int, vertices: int = 40, faces: int = 60, extent: float = 50.0):
    rng = np.random.default_rng(seed)
    points = rng.uniform(-0.2 * extent, 1.2 * extent, (vertices, 2))
    depth = rng.uniform(0.5, 3.0, vertices)
    triangles = rng.integers(0, vertices, (faces, 3))
    attributes = rng.normal(size=(vertices, 3))
    return points, depth, triangles, attributes


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_on_random_overlapping_meshes(seed):
    points, depth, triangles, attributes = random_mesh(seed)
    window = (0, 0, 50, 40) if seed % 2 else (7, 3, 45, 50)
    result = rasterize(points, depth, triangles, window, attributes, barycentrics=True)
    triangle, nearest, values = brute_force(points, depth, triangles, window, attributes)
    assert result.triangle.shape == triangle.shape
    assert result.mask.sum() > 0.5 * result.mask.size
    np.testing.assert_array_equal(result.triangle, triangle)
    np.testing.assert_allclose(result.depth, nearest, rtol=1e-6)
    np.testing.assert_allclose(result.attributes, values, rtol=1e-5, atol=1e-5)
    covered = result.mask
    np.testing.assert_allclose(result.barycentric[covered].sum(axis=1), 1.0, atol=1e-6)
    assert (result.barycentric[~covered] == 0).all() and (result.depth[~covered] == 0).all()


def test_batches_give_the_same_result(monkeypatch):
    points, depth, triangles, attributes = random_mesh(7, faces=120)
    window = (0, 0, 60, 60)
    whole = rasterize(points, depth, triangles, window, attributes)
    monkeypatch.setattr(raster, "MAX_CANDIDATES", 50)
    batched = rasterize(points, depth, triangles, window, attributes)
    np.testing.assert_array_equal(batched.triangle, whole.triangle)
    np.testing.assert_array_equal(batched.depth, whole.depth)
    np.testing.assert_array_equal(batched.attributes, whole.attributes)


def test_pixel_centres_are_at_integer_coordinates():
    # Right triangle with legs of 4 px from (0, 0): covers the centres with x + y <= 4.
    points = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    result = rasterize(points, np.ones(3), np.array([[0, 1, 2]]), (0, 0, 6, 6))
    ys, xs = np.mgrid[0:6, 0:6]
    np.testing.assert_array_equal(result.mask, xs + ys <= 4)
    # shifted by half a pixel: the legs fall between centres, the hypotenuse x + y = 5 on them
    shifted = rasterize(points + 0.5, np.ones(3), np.array([[0, 1, 2]]), (0, 0, 6, 6))
    np.testing.assert_array_equal(shifted.mask, (xs >= 1) & (ys >= 1) & (xs + ys <= 5))


def test_window_offsets_crop_the_frame():
    points, depth, triangles, attributes = random_mesh(3)
    frame = rasterize(points, depth, triangles, (0, 0, 60, 60), attributes)
    window = rasterize(points, depth, triangles, (10, 20, 40, 35), attributes)
    assert window.window == (10, 20, 40, 35) and window.depth.shape == (15, 30)
    np.testing.assert_array_equal(window.triangle, frame.triangle[20:35, 10:40])
    np.testing.assert_array_equal(window.depth, frame.depth[20:35, 10:40])


def test_winding_does_not_matter():
    points, depth, triangles, attributes = random_mesh(4)
    forward = rasterize(points, depth, triangles, (0, 0, 50, 50), attributes)
    backward = rasterize(points, depth, triangles[:, ::-1], (0, 0, 50, 50), attributes)
    np.testing.assert_array_equal(forward.triangle, backward.triangle)
    np.testing.assert_allclose(forward.depth, backward.depth, rtol=1e-6)


def test_skips_triangles_behind_the_camera_and_degenerate_ones():
    points = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [5.0, 5.0]])
    depth = np.array([1.0, 1.0, -1.0, 1.0])
    behind = rasterize(points, depth, np.array([[0, 1, 2]]), (0, 0, 12, 12))
    degenerate = rasterize(points, np.ones(4), np.array([[0, 3, 3], [0, 3, 0]]), (0, 0, 12, 12))
    nothing = rasterize(points, np.ones(4), np.zeros((0, 3), int), (0, 0, 12, 12))
    for result in (behind, degenerate, nothing):
        assert not result.mask.any() and (result.triangle == -1).all()


def test_planes_get_exact_perspective_depth_and_points():
    """A triangulated plane seen in perspective: depth and interpolated 3D points at every pixel
    must be the ray-plane intersection (interpolating z linearly in screen space would not)."""
    rng = np.random.default_rng(11)
    k = np.array([[300.0, 0, 79.5], [0, 300.0, 59.5], [0, 0, 1]])
    normal = np.array([0.5, -0.3, -1.0])
    normal /= np.linalg.norm(normal)
    offset = normal @ [0.0, 0.0, 1.2]  # plane n . p = offset through (0, 0, 1.2), steeply slanted
    in_plane = np.linalg.svd(normal[None])[2][1:]  # two directions spanning the plane
    grid = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 5), np.linspace(-0.4, 0.4, 5)), -1).reshape(-1, 2)
    grid += rng.uniform(-0.03, 0.03, grid.shape)
    points3d = [0.0, 0.0, 1.2] + grid @ in_plane
    triangles = np.array([[r * 5 + c, r * 5 + c + 1, r * 5 + c + 5] for r in range(4) for c in range(4)]
                         + [[r * 5 + c + 1, r * 5 + c + 6, r * 5 + c + 5] for r in range(4) for c in range(4)])
    projected = points3d @ k.T
    pixels = projected[:, :2] / projected[:, 2:]
    result = rasterize(pixels, points3d[:, 2], triangles, (0, 0, 160, 120), points3d)
    assert result.mask.mean() > 0.3

    rows, cols = np.nonzero(result.mask)
    rays = np.linalg.solve(k, np.stack([cols, rows, np.ones_like(cols)]).astype(np.float64)).T
    exact_depth = offset / (rays @ normal)
    np.testing.assert_allclose(result.depth[rows, cols], exact_depth, rtol=1e-6)
    np.testing.assert_allclose(result.attributes[rows, cols], rays * exact_depth[:, None], atol=1e-6)
    screen_affine = np.stack([cols, rows, np.ones_like(cols)], axis=1).astype(np.float64)
    fit = np.linalg.lstsq(screen_affine, exact_depth, rcond=None)[0]
    assert np.abs(screen_affine @ fit - exact_depth).max() > 1e-3, "slanted enough that linear z would fail"


def test_nearest_surface_wins():
    square = np.array([[0.0, 0.0], [20.0, 0.0], [20.0, 20.0], [0.0, 20.0]])
    points = np.concatenate([square, square + 5])
    depth = np.array([2.0] * 4 + [1.0] * 4)
    triangles = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    result = rasterize(points, depth, triangles, (0, 0, 26, 26))
    assert (result.depth[5:21, 5:21] == 1.0).all()
    assert (result.triangle[5:21, 5:21] >= 2).all()
    assert (result.depth[0:5, 0:5] == 2.0).all()


def test_mesh_window():
    points = np.array([[10.2, 20.7], [30.0, 40.5]])
    assert mesh_window(points, (100, 100), margin=0) == (11, 21, 31, 41)
    assert mesh_window(points, (100, 100), margin=2) == (9, 19, 33, 43)
    assert mesh_window(points, (25, 30), margin=2) == (9, 19, 25, 30)
    assert mesh_window(points - 200, (100, 100)) == (0, 0, 0, 0)
