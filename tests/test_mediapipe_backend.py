"""The default backend on real footage (the sample clip), a public-domain photo and
synthetic landmarks; and the backend registry."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from mediapipe.framework.formats import landmark_pb2
from scipy import ndimage

from conftest import first_face_frames
from model_runtime.backends import available_backends, create_backend
from model_runtime.backends.mediapipe_dense import (
    MediaPipeDenseBackend,
    dense_maps,
    landmark_array,
    landmark_pixels,
    largest_face,
)
from model_runtime.contract import CANONICAL_SPACE_ID
from model_runtime.errors import InputError, UserError
from model_runtime.intrinsics import intrinsics_for
from model_runtime.raster import mesh_window, rasterize
from model_runtime.template import load_template

FRAMES = 25


@pytest.fixture(scope="module")
def grid_frames() -> list[np.ndarray]:
    return first_face_frames(FRAMES)


@pytest.fixture(scope="module")
def grid_maps(grid_frames):
    height, width = grid_frames[0].shape[:2]
    intrinsics = intrinsics_for(width, height)
    with MediaPipeDenseBackend() as backend:
        return list(backend.predict_frames(grid_frames, intrinsics))


def hopper() -> np.ndarray:
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def at_landmarks(image: np.ndarray, maps, indices: np.ndarray):
    """Map values at the landmarks' nearest pixels, and whether those pixels are face pixels."""
    cols, rows = np.round(maps.landmarks2d[indices]).astype(int).T
    rows, cols = rows - maps.window[1], cols - maps.window[0]
    return image[rows, cols], maps.mask[rows, cols]


def test_registry_lists_backends_without_importing_them():
    backends = available_backends()
    assert {"mediapipe", "faceanything"} <= set(backends)
    assert all(isinstance(text, str) and text for text in backends.values())
    with pytest.raises(UserError) as error:
        create_backend("nope")
    assert error.value.code == "unknown_backend" and "mediapipe" in error.value.hint


def test_backend_import_leaves_out_matplotlib_but_every_solution_still_imports():
    """A runtime process does not pay for MediaPipe's drawing utilities (matplotlib) it never uses."""
    script = ("import sys; import model_runtime.backends.mediapipe_dense; import mediapipe as mp; "
              "print('matplotlib' in sys.modules, mp.__version__ != '', hasattr(mp.solutions, 'face_mesh')); "
              "import mediapipe.python.solutions.drawing_utils as d; print(mp.solutions.drawing_utils is d)")
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True", "True", "True"]


def test_registry_creates_the_default_backend():
    backend = create_backend("mediapipe", static_images=True, max_faces=1)
    try:
        assert isinstance(backend, MediaPipeDenseBackend)
        assert backend.name == "mediapipe" and backend.canonical_space == CANONICAL_SPACE_ID
        assert "mediapipe 0." in backend.version
        assert backend.describe() == {"max_faces": 1, "static_images": True, "appearance": False}
    finally:
        backend.close()


def test_every_grid_frame_has_a_face_with_consistent_landmarks(grid_frames, grid_maps):
    assert len(grid_maps) == len(grid_frames) == FRAMES
    for maps in grid_maps:
        assert maps.has_face
        assert maps.landmarks2d.shape == (478, 2) and maps.landmarks3d.shape == (478, 3)
        points = maps.landmarks3d.astype(np.float64)
        projected = points @ maps.intrinsics.T
        reprojection = projected[:, :2] / projected[:, 2:] - maps.landmarks2d
        assert np.abs(reprojection).max() < 0.01
        assert 0.2 < points[:, 2].min() and points[:, 2].max() < 3.0
        pose = maps.head_pose
        np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-9)
        assert np.linalg.det(pose[:3, :3]) == pytest.approx(1.0)
        assert pose[2, 2] < -0.8, "a frontal face looks back at the camera: canonical +Z is camera -z"


def test_maps_agree_with_the_landmarks(grid_maps):
    template = load_template()
    face = np.arange(468)
    depth_errors, canonical_errors = [], []
    for maps in grid_maps:
        x0, y0, x1, y1 = maps.window
        assert maps.depth.shape == maps.mask.shape == (y1 - y0, x1 - x0)
        assert maps.canonical.shape == (y1 - y0, x1 - x0, 3)
        depth, on_face = at_landmarks(maps.depth, maps, face)
        canonical, _ = at_landmarks(maps.canonical, maps, face)
        assert on_face.mean() > 0.85
        depth_errors.append(np.abs(depth - maps.landmarks3d[face, 2])[on_face])
        canonical_errors.append(np.linalg.norm(canonical - template.vertices[face], axis=1)[on_face])
        face_depth = maps.depth[maps.mask]
        assert 0.2 < face_depth.min() and face_depth.max() < 3.0
        assert (maps.depth[~maps.mask] == 0).all() and (maps.canonical[~maps.mask] == 0).all()
    depth_errors, canonical_errors = np.concatenate(depth_errors), np.concatenate(canonical_errors)
    assert np.median(depth_errors) < 0.001 and np.percentile(depth_errors, 90) < 0.003
    assert np.median(canonical_errors) < 0.002 and np.percentile(canonical_errors, 90) < 0.004


def test_maps_cover_the_face_and_confidence_follows_the_surface(grid_maps):
    for maps in grid_maps:
        frame_window = mesh_window(maps.landmarks2d, maps.frame_size, margin=2)
        assert maps.window == frame_window
        assert maps.mask.mean() > 0.6
        for confidence in (maps.depth_confidence, maps.canonical_confidence):
            assert confidence.dtype == np.float32 and confidence.shape == maps.mask.shape
            assert confidence.min() >= 0 and confidence.max() <= 1
            assert (confidence[~maps.mask] == 0).all()
        names = load_template().landmarks
        points = np.array([names["forehead_center"], names["jaw_L_1"], names["jaw_R_1"]])
        (forehead, *sides), _ = at_landmarks(maps.depth_confidence, maps, points)
        assert forehead > 0.9 and max(sides) < 0.4, "facing the camera on the forehead, grazing at the ears"


def test_distance_scales_with_the_focal_length(grid_frames):
    height, width = grid_frames[0].shape[:2]
    wide, narrow = intrinsics_for(width, height, focal_px=300), intrinsics_for(width, height, focal_px=600)
    with MediaPipeDenseBackend(static_images=True) as backend:
        near, far = backend.predict(grid_frames[0], wide), backend.predict(grid_frames[0], narrow)
    np.testing.assert_allclose(far.landmarks2d, near.landmarks2d)
    assert far.head_pose[2, 3] / near.head_pose[2, 3] == pytest.approx(2.0, rel=0.02)
    assert np.median(far.depth[far.mask]) / np.median(near.depth[near.mask]) == pytest.approx(2.0, rel=0.02)


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_no_face_gives_empty_maps(kind):
    rng = np.random.default_rng(0)
    image = np.zeros((288, 360, 3), np.uint8) if kind == "blank" else rng.integers(0, 256, (288, 360, 3), np.uint8)
    intrinsics = intrinsics_for(360, 288)
    with MediaPipeDenseBackend() as backend:
        maps = backend.predict(image, intrinsics)
    assert not maps.has_face and maps.window == (0, 0, 0, 0)
    assert maps.landmarks2d is None and maps.head_pose is None
    assert maps.frame_size == (360, 288)


def test_photo_in_static_mode_and_subject_left_is_image_right():
    image = hopper()
    height, width = image.shape[:2]
    with MediaPipeDenseBackend(static_images=True) as backend:
        maps = backend.predict(image, intrinsics_for(width, height))
    names = load_template().landmarks
    assert maps.has_face and maps.extras["faces_found"] == 1
    assert maps.landmarks2d[names["pupil_L"], 0] > maps.landmarks2d[names["pupil_R"], 0]
    assert maps.landmarks2d[names["mouth_corner_L"], 0] > maps.landmarks2d[names["mouth_corner_R"], 0]
    canonical_x, on_face = at_landmarks(maps.canonical[..., 0], maps, np.array([names["cheek_L"], names["cheek_R"]]))
    assert on_face.all() and canonical_x[0] > 0 > canonical_x[1]


def posed_template_landmarks(template, intrinsics, frame_size):
    """A posed template's normalised MediaPipe-style landmarks (x, y from pixel edges; z
    relative, in image widths at the face's scale), its pose, camera points and pixels."""
    width, height = frame_size
    rotation = cv2.Rodrigues(np.array([0.2, 2.9, -0.1]))[0]  # turned to one side, facing the camera
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, [0.03, -0.02, 0.6]
    points = template.vertices @ rotation.T + pose[:3, 3]
    projected = points @ intrinsics.T
    pixels = projected[:, :2] / projected[:, 2:]
    anchor = points[template.rigid, 2].mean()
    relative_z = (points[:, 2] - anchor) * intrinsics[0, 0] / (width * anchor) + 0.123  # arbitrary offset
    normalized = np.column_stack([(pixels + 0.5) / [width, height], relative_z])
    return normalized, pose, points, pixels


def test_synthetic_landmarks_give_back_the_exact_pose_and_points():
    """Landmarks made from a posed template must give back that pose, those 3D points and,
    inside the silhouette ring, the template rendered at that pose."""
    template = load_template()
    intrinsics = intrinsics_for(640, 480, focal_px=700)
    normalized, pose, points, pixels = posed_template_landmarks(template, intrinsics, (640, 480))

    maps = dense_maps(landmark_pixels(normalized, (640, 480)), normalized[:, 2], intrinsics, (640, 480), template)

    np.testing.assert_allclose(maps.head_pose, pose, atol=1e-6)
    np.testing.assert_allclose(maps.landmarks3d, points, atol=1e-6)
    expected = rasterize(pixels, points[:, 2], template.triangles, maps.window, template.vertices)
    assert maps.mask[expected.mask].all()
    np.testing.assert_allclose(maps.depth[expected.mask], expected.depth[expected.mask], atol=1e-6)
    np.testing.assert_allclose(maps.canonical[expected.mask], expected.attributes[expected.mask], atol=1e-6)


def test_silhouette_ring_continues_the_edge_triangles_and_leaves_the_holes_open():
    """One pixel outside the rendered template's silhouette is added, none in the eye and mouth
    holes; ring pixels lie on the planes of the mesh's triangles (so the posed template's rigid
    transform maps their canonical coordinates onto their unprojected depth) next to their face
    neighbours, at half a neighbour's confidence at most."""
    template = load_template()
    intrinsics = intrinsics_for(640, 480, focal_px=700)
    normalized, pose, points, pixels = posed_template_landmarks(template, intrinsics, (640, 480))

    maps = dense_maps(landmark_pixels(normalized, (640, 480)), normalized[:, 2], intrinsics, (640, 480), template)

    covered = rasterize(pixels, points[:, 2], template.triangles, maps.window).mask
    filled = ndimage.binary_fill_holes(covered)
    holes = filled & ~covered
    assert holes.sum() > 100, "the template's eyes and mouth are open"
    assert not maps.mask[holes].any()
    ring = maps.mask & ~covered
    around_silhouette = ndimage.binary_dilation(covered, np.ones((3, 3), bool)) & ~filled
    assert not (ring & ~around_silhouette).any()
    assert ring.sum() > 0.9 * around_silhouette.sum() > 200, "only slivers seen edge-on are not extended"

    rows, cols = np.nonzero(ring)
    depth = maps.depth[rows, cols].astype(np.float64)
    rays = np.linalg.solve(intrinsics, np.stack([cols + maps.window[0], rows + maps.window[1], np.ones_like(rows)]))
    camera_points = (rays * depth).T
    canonical = maps.canonical[rows, cols].astype(np.float64)
    np.testing.assert_allclose(canonical @ pose[:3, :3].T + pose[:3, 3], camera_points, atol=2e-6)

    padded_canonical = np.pad(np.where(covered[..., None], maps.canonical, np.nan), ((1, 1), (1, 1), (0, 0)),
                              constant_values=np.nan)
    padded_confidence = np.pad(np.where(covered, maps.depth_confidence, 0), 1)
    around = [(rows + 1 + dy, cols + 1 + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    nearest = np.nanmin([np.linalg.norm(padded_canonical[r, c] - canonical, axis=1) for r, c in around], axis=0)
    assert np.median(nearest) < 0.005 and nearest.max() < 0.04, "a pixel beyond the edge, not far off the face"
    neighbour_confidence = np.max([padded_confidence[r, c] for r, c in around], axis=0)
    assert (maps.depth_confidence[rows, cols] <= 0.5 * neighbour_confidence + 1e-7).all()
    np.testing.assert_array_equal(maps.canonical_confidence, maps.depth_confidence)


def test_landmark_parsing_with_and_without_extra_fields():
    rng = np.random.default_rng(1)
    values = rng.uniform(-1, 1, (478, 3)).astype(np.float32)
    plain = landmark_pb2.NormalizedLandmarkList()
    with_visibility = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in values.tolist():
        plain.landmark.add(x=x, y=y, z=z)
        with_visibility.landmark.add(x=x, y=y, z=z, visibility=0.5)
    np.testing.assert_array_equal(landmark_array(plain), values)
    np.testing.assert_array_equal(landmark_array(with_visibility), values)


def test_largest_face_is_chosen():
    small = np.zeros((478, 3))
    small[:, :2] = np.random.default_rng(2).uniform(0.1, 0.2, (478, 2))
    large = small.copy()
    large[:, :2] = 0.5 + (small[:, :2] - 0.15) * 3
    assert largest_face([small, large], (640, 480)) is large
    assert largest_face([large, small], (640, 480)) is large


@pytest.mark.parametrize("image", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                   np.zeros((10, 10, 3), np.float32), "frame.png"])
def test_bad_frames_are_input_errors(image):
    with MediaPipeDenseBackend() as backend:
        with pytest.raises(InputError) as error:
            backend.predict(image, intrinsics_for(10, 10))
    assert "RGB" in error.value.message and "uint8" in error.value.hint


@pytest.mark.parametrize("intrinsics", [None, np.eye(2), np.diag([-1.0, 1.0, 1.0])])
def test_bad_intrinsics_are_input_errors(intrinsics):
    with MediaPipeDenseBackend() as backend:
        with pytest.raises(InputError) as error:
            backend.predict(np.zeros((10, 10, 3), np.uint8), intrinsics)
    assert "intrinsics" in error.value.message + error.value.hint
