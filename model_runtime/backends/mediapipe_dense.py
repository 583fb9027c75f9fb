"""The default backend: MediaPipe Face Mesh made dense.

Per frame:

1. Face Mesh (legacy solution, refined landmarks) gives 478 landmarks per face; with several
   faces the largest (landmark bounding box) is used. No face: ``FrameMaps.empty``. In a
   sequence, Face Mesh runs in still-image mode on a crop around the previous frame's landmarks
   (not in its own video mode, whose hidden state a resumed capture could not restore: a frame
   depends only on its pixels and the previous frame's stored landmarks). With the appearance
   stage on (the default), ``model_runtime/appearance.py`` then
   moves the landmarks onto what the pixels show; every later step, and so the dense maps, the
   meshes and the named points, uses the refined landmarks. Landmarks the stage flags hidden
   get zero confidence.
2. Landmark pixels: ``x = x_norm * W - 0.5``, ``y = y_norm * H - 0.5``. MediaPipe normalises by
   the image's edges (0 = left edge of the first pixel), the contract puts pixel centres at
   integer coordinates.
3. Head pose: the canonical template (``template.py``) is fitted rigidly to the 2D landmarks of
   its skull-fixed points (forehead, nose, eye corners, cheekbones; no lips, jaw, lids or brows)
   with the frame's intrinsics (``cv2.solvePnP``, SQPnP: globally optimal, needs no previous
   pose, so frames stay independent). The template's metric size (63 mm between the pupils)
   fixes the distance.
4. Landmark depth: MediaPipe's z is relative depth in units of the image width, at the face's
   image scale. Converted to metres at the face's distance and anchored on the posed template:
   ``Z_i = Z_a + (z_i - z_a) * W * Z_a / fx`` with ``Z_a`` and ``z_a`` the mean camera depth of
   the posed template's rigid points and the mean MediaPipe z of the same landmarks. Each 3D
   landmark is then the point at depth ``Z_i`` on its pixel's ray, so it reprojects exactly onto
   its 2D landmark.
5. Dense maps: the landmark mesh (template triangles, eyes and mouth open, iris fans) is
   rasterised (``raster.py``, z-buffered, perspective-correct) over the mesh's bounding box plus
   a small margin, with the template's vertices as attributes: depth, canonical coordinates and
   the face mask.
6. Silhouette ring: landmarks on the face's outline (jaw, temples) sit on the mesh's edge, where
   the outermost triangles often cover no pixel centre, so the maps would never show them. Every
   pixel outside the silhouette that touches (8-neighbourhood) a face pixel is added to the maps
   with the values of the nearest face triangle's plane extended to its centre: of its face
   neighbours' triangles, the one whose barycentrics there are least negative; inverse depth and
   attribute/depth extrapolated linearly, as the rasteriser interpolates them. The maps then stay
   linear across the edge, which is what the tracking's 3x3 plane fit assumes. A pixel further
   outside than its triangle's own size (a sliver seen edge-on) is left out. Ring pixels get
   half the confidence of the neighbour whose triangle they extend. The eye and mouth holes (the
   uncovered regions that do not reach the window's border) get no ring: their edges already lie
   inside the face and a ring would cover the lids' and lips' gaps.

Confidence: the cosine between a surface point's normal and its ray to the camera, clipped to
[0, 1] (per-vertex normals of the camera-space landmark mesh, interpolated). Both the depth and
the canonical coordinate of a pixel come from the same interpolated landmark mesh and both get
worse as the surface turns away (a landmark error of e pixels moves a point along a surface seen
at angle t by e / cos t), so the two confidences are the same map here; a backend with separate
estimates fills them separately.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import Iterable, Iterator

import cv2
import numpy as np


class _FaceSolutionsOnly(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``mediapipe.python.solutions`` with only the solutions this backend uses: the
    package's own init imports every solution and their drawing utilities, and through them
    matplotlib, half a second of every runtime process. Its other modules still import one by
    one (``import mediapipe.python.solutions.drawing_utils``)."""

    NAME = "mediapipe.python.solutions"
    USED = ("face_detection", "face_mesh")

    def find_spec(self, name, path, target=None):
        if name != self.NAME:
            return None
        sys.meta_path.remove(self)  # once
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = self
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        for name in self.USED:
            importlib.import_module(f"{self.NAME}.{name}")


if "mediapipe" not in sys.modules:
    sys.meta_path.insert(0, _FaceSolutionsOnly())
import mediapipe as mp  # noqa: E402 - after the finder above
from mediapipe.python.solutions import face_detection, face_mesh  # noqa: E402

from model_runtime.appearance import AppearanceTracker, to_gray
from model_runtime.backends import backend_version
from model_runtime.contract import CANONICAL_SPACE_ID, FrameMaps
from model_runtime.errors import InputError, UserError
from model_runtime.raster import Raster, mesh_window, rasterize
from model_runtime.template import FaceTemplate, load_template

WINDOW_MARGIN = 2
RING_CONFIDENCE = 0.5
"""Confidence of a silhouette ring pixel relative to the face pixel whose triangle it extends."""
MAX_EXTRAPOLATION = 1.0
"""How far (in barycentric units, i.e. the triangle's own size) a ring pixel may lie outside the
triangle it extends: a sliver seen edge-on at the silhouette has no trustworthy plane a pixel away."""
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
LANDMARK_COUNT = 478
TRACKING_CROP = 256
"""Side (pixels) of the square crop Face Mesh sees while the appearance stage tracks a face."""
TRACKING_CROP_EXTENT = 1.8
"""That crop's side in units of the previous frame's landmark box's longer side."""

# A NormalizedLandmarkList holding only x, y, z serialises to 17 bytes per landmark: field 1
# (message, length 15) holding fields 1, 2, 3 (fixed32 floats). Reading that with numpy is ~10x
# faster than 478 protobuf attribute lookups.
_PACKED_LANDMARK = np.dtype([("tag", "u1"), ("length", "u1"), ("x_tag", "u1"), ("x", "<f4"),
                             ("y_tag", "u1"), ("y", "<f4"), ("z_tag", "u1"), ("z", "<f4")])
_PACKED_TAGS = {"tag": 0x0A, "length": 15, "x_tag": 0x0D, "y_tag": 0x15, "z_tag": 0x1D}


class MediaPipeDenseBackend:
    """Dense depth and canonical maps from MediaPipe Face Mesh (see the module docstring).

    max_faces:     faces MediaPipe looks for in the whole frame (on an image, or to start a
                   track); the largest is used. Default four: the detector runs anyway.
    static_images: treat every frame as an unrelated image (a single photo, or a folder of
                   unrelated photos when asked). Otherwise frames are a sequence.
    appearance:    in a sequence, refine the landmarks with the appearance stage
                   (``model_runtime/appearance.py``): tracks follow the skin's texture from frame
                   to frame, anchored on the first frame with a face. False gives Face Mesh's
                   landmarks as they are (still on the crop around the previous frame's).
    """

    name = "mediapipe"
    canonical_space = CANONICAL_SPACE_ID

    def __init__(self, max_faces: int | None = None, static_images: bool = False,
                 min_detection_confidence: float = 0.5, appearance: bool = True):
        tracking = not static_images  # on a crop around the previous frame's landmarks
        if max_faces is None:
            max_faces = 4
        if max_faces < 1:
            raise UserError(f"max_faces is {max_faces}.", hint="Look for at least one face.", code="bad_option")
        self.template = load_template()
        self.max_faces = max_faces
        self.static_images = static_images
        self.version = (f"mediapipe-dense {backend_version('mediapipe')} "
                        f"(mediapipe {mp.__version__}, template {self.template.space_id})")
        self.appearance = appearance and tracking
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
        )
        self._detector = self._crop_mesh = None
        self._tracker = AppearanceTracker(self.template.triangles) if self.appearance else None
        self._near_mesh = face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=min_detection_confidence) if tracking else None
        self._tracked: np.ndarray | None = None  # the previous frame's landmark pixels, float32 as stored

    def describe(self) -> dict:
        """Settings recorded in the capture manifest."""
        return {"max_faces": self.max_faces, "static_images": self.static_images, "appearance": self.appearance}

    @property
    def depends_on_history(self) -> bool:
        """Whether a frame's maps depend on the frames before it (then a resumed capture hands
        over the state with ``resume_tracking``)."""
        return not self.static_images

    def resume_tracking(self, previous: tuple[np.ndarray, FrameMaps] | None,
                        reference: tuple[np.ndarray, FrameMaps] | None) -> None:
        """Continue a sequence whose earlier frames another run computed: (RGB image, stored maps)
        of the frame just before the next one (None without a face) and of the first frame with a
        face (the appearance stage's reference)."""
        if self.static_images:
            return
        self._tracked = None if previous is None else np.asarray(previous[1].landmarks2d, np.float32)
        if self._tracker is None:
            return
        self._tracker.resume(*(None if view is None else (to_gray(_checked_image(view[0])), view[1].landmarks2d)
                               for view in (previous, reference)))

    def predict(self, image_rgb: np.ndarray, intrinsics: np.ndarray) -> FrameMaps:
        """Maps of one frame (H, W, 3) uint8 RGB with its (3, 3) pinhole intrinsics;
        ``extras["faces_found"]`` counts the faces MediaPipe saw."""
        image = _checked_image(image_rgb)
        intrinsics = _checked_intrinsics(intrinsics)
        height, width = image.shape[:2]
        faces = self._faces_near(image, self._tracked) if self._tracked is not None else []
        if not faces:
            faces = self._mesh.process(image).multi_face_landmarks
            faces = [landmark_array(face) for face in faces] if faces else self._small_faces(image)
        if not faces:
            self.lose_track()
            return FrameMaps.empty(intrinsics, (width, height))
        normalized = largest_face(faces, (width, height))
        if not self.static_images and self._tracked is None:
            # A new track: Face Mesh again on the crop it will see from now on, so that its
            # landmarks do not shift with the change of crop on the next frame.
            normalized = (self._faces_near(image, landmark_pixels(normalized, (width, height))) or [normalized])[0]
        pixels, hidden = landmark_pixels(normalized, (width, height)), None
        if self._tracker is not None:
            tracked = self._tracker.update(to_gray(image), pixels, depth=1.0 + normalized[:, 2])
            pixels, hidden = tracked.pixels.astype(np.float64), tracked.hidden
        maps = dense_maps(pixels, normalized[:, 2], intrinsics, (width, height), self.template, hidden)
        if not self.static_images:
            self._tracked = maps.landmarks2d if maps.has_face else None  # float32, as a resume reads them back
            if self._tracker is not None and not maps.has_face:
                self._tracker.reject_last()
        maps.extras["faces_found"] = len(faces)
        return maps

    def lose_track(self) -> None:
        """End the current track (a frame without a face, or one that could not be read): the
        next face found starts a new one, as it does after a resume at that frame."""
        self._tracked = None
        if self._tracker is not None:
            self._tracker.lose_track()

    def _faces_near(self, image: np.ndarray, pixels: np.ndarray) -> list[np.ndarray]:
        """Face Mesh on a square crop around the previous frame's landmarks (still-image mode:
        the result depends on this frame and that crop only); [] when it finds no face there."""
        height, width = image.shape[:2]
        low, high = pixels.min(axis=0).astype(np.float64), pixels.max(axis=0).astype(np.float64)
        side = max(float((high - low).max()) * TRACKING_CROP_EXTENT, 16.0)
        origin = (low + high) / 2 - side / 2
        scale = TRACKING_CROP / side
        matrix = np.array([[scale, 0, -scale * origin[0]], [0, scale, -scale * origin[1]]])
        crop = cv2.warpAffine(image, matrix, (TRACKING_CROP, TRACKING_CROP), flags=cv2.INTER_AREA
                              if scale < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        found = self._near_mesh.process(crop).multi_face_landmarks
        if not found:
            return []
        crop_landmarks = landmark_array(found[0])
        # crop pixel c shows frame point origin + c / scale; back to the frame's normalised units
        frame_pixels = (crop_landmarks[:, :2] * TRACKING_CROP - 0.5) / scale + origin
        normalized = np.empty_like(crop_landmarks)
        normalized[:, :2] = (frame_pixels + 0.5) / np.array([width, height], np.float64)
        normalized[:, 2] = crop_landmarks[:, 2] * side / width
        return [normalized]

    def _small_faces(self, image: np.ndarray) -> list[np.ndarray]:
        """Faces too small for Face Mesh's own (short-range) detector: MediaPipe's full-range
        detector finds the largest one, and Face Mesh runs on a crop around it."""
        if self._detector is None:
            self._detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
            self._crop_mesh = face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True)
        detections = self._detector.process(image).detections
        if not detections:
            return []
        height, width = image.shape[:2]
        boxes = [d.location_data.relative_bounding_box for d in detections]
        box = max(boxes, key=lambda b: b.width * b.height)
        # A square crop three face-widths wide: the short-range detector expects a face that
        # fills a good part of the frame, but not all of it.
        size = 3 * max(box.width * width, box.height * height)
        x0 = int(max((box.xmin + box.width / 2) * width - size / 2, 0))
        y0 = int(max((box.ymin + box.height / 2) * height - size / 2, 0))
        x1, y1 = int(min(x0 + size, width)), int(min(y0 + size, height))
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        found = self._crop_mesh.process(crop).multi_face_landmarks
        if not found:
            return []
        crop_w, crop_h = x1 - x0, y1 - y0
        to_frame = np.array([crop_w / width, crop_h / height, crop_w / width])
        offset = np.array([x0 / width, y0 / height, 0.0])
        return [landmark_array(face) * to_frame + offset for face in found]

    def predict_frames(self, images: Iterable[np.ndarray], intrinsics: np.ndarray) -> Iterator[FrameMaps]:
        """``predict`` over a stream of frames, in order."""
        for image in images:
            yield self.predict(image, intrinsics)

    def close(self) -> None:
        for graph in (self._mesh, self._detector, self._crop_mesh, self._near_mesh):
            if graph is not None:
                graph.close()
        self._mesh = self._detector = self._crop_mesh = self._near_mesh = None

    def __enter__(self) -> "MediaPipeDenseBackend":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def landmark_array(landmarks) -> np.ndarray:
    """(478, 3) float64 normalised x, y, z of a MediaPipe NormalizedLandmarkList."""
    packed = landmarks.SerializeToString()
    if len(packed) == LANDMARK_COUNT * _PACKED_LANDMARK.itemsize:
        records = np.frombuffer(packed, _PACKED_LANDMARK)
        if all((records[field] == tag).all() for field, tag in _PACKED_TAGS.items()):
            return np.stack([records["x"], records["y"], records["z"]], axis=1).astype(np.float64)
    return np.array([(p.x, p.y, p.z) for p in landmarks.landmark], np.float64)


def largest_face(faces: list[np.ndarray], frame_size: tuple[int, int]) -> np.ndarray:
    """The face whose landmarks span the largest box in pixels."""
    scale = np.array(frame_size, np.float64)

    def area(face: np.ndarray) -> float:
        extent = np.ptp(face[:, :2] * scale, axis=0)
        return float(extent[0] * extent[1])

    return max(faces, key=area)


def dense_maps(pixels: np.ndarray, relative_z: np.ndarray, intrinsics: np.ndarray, frame_size: tuple[int, int],
               template: FaceTemplate, hidden: np.ndarray | None = None) -> FrameMaps:
    """The frame's maps from one face's landmark pixels (478, 2) and MediaPipe's relative z
    (478,). ``hidden`` (478,) bool flags landmarks the appearance stage found covered: the
    confidence falls to 0 toward them, so reconstruction treats what lies there as unseen."""
    pose = fit_head_pose(pixels, intrinsics, template)
    if pose is None:
        return FrameMaps.empty(intrinsics, frame_size)
    depth = landmark_depths(relative_z, pose, intrinsics, frame_size[0], template)
    points = unproject(pixels, depth, intrinsics)
    facing = vertex_facing(points, template.triangles)
    if hidden is not None:
        facing = np.where(hidden, 0.0, facing)
    window = mesh_window(pixels, frame_size, WINDOW_MARGIN)
    raster = rasterize(pixels, depth, template.triangles, window,
                       attributes=np.column_stack([template.vertices, facing]))
    confidence = np.clip(raster.attributes[..., 3], 0.0, 1.0)
    add_silhouette_ring(raster, confidence, pixels, depth, template.triangles, template.vertices)
    return FrameMaps(
        depth=raster.depth,
        canonical=np.ascontiguousarray(raster.attributes[..., :3]),
        depth_confidence=confidence,
        canonical_confidence=confidence.copy(),
        mask=raster.triangle >= 0,
        intrinsics=intrinsics,
        frame_size=tuple(frame_size),
        window=raster.window,
        landmarks2d=pixels.astype(np.float32),
        landmarks3d=points.astype(np.float32),
        head_pose=pose,
    )


def add_silhouette_ring(raster: Raster, confidence: np.ndarray, pixels: np.ndarray, depth: np.ndarray,
                        triangles: np.ndarray, canonical: np.ndarray) -> None:
    """Extends ``raster`` (triangle, depth, canonical in attributes[..., :3]) and ``confidence``
    in place by one pixel outside the mesh's silhouette (see the module docstring, step 6)."""
    covered = raster.triangle >= 0
    rows, cols = np.nonzero(_outside(covered) & cv2.dilate(covered.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool))
    if rows.size == 0:
        return
    padded = np.pad(raster.triangle, 1, constant_values=-1)
    candidates = np.stack([padded[rows + 1 + dy, cols + 1 + dx] for dy, dx in _NEIGHBOURS], axis=1)  # (n, 8)
    x0, y0 = raster.window[:2]
    x, y = (cols + x0).astype(np.float64)[:, None], (rows + y0).astype(np.float64)[:, None]
    weights = _barycentrics(pixels, triangles[candidates].transpose(2, 0, 1), x, y)  # (3, n, 8)
    outside_by = np.where(candidates >= 0, -weights.min(axis=0), np.inf)
    best = np.argmin(outside_by, axis=1)
    pick = np.arange(rows.size)
    triangle = candidates[pick, best]
    over_depth = weights[:, pick, best].T / depth[triangles[triangle]]  # perspective-correct: affine in x, y
    inverse_depth = over_depth.sum(axis=1)
    keep = (outside_by[pick, best] <= MAX_EXTRAPOLATION) & (inverse_depth > 0)
    rows, cols, triangle, best = rows[keep], cols[keep], triangle[keep], best[keep]
    over_depth, inverse_depth = over_depth[keep], inverse_depth[keep]
    offsets = np.array(_NEIGHBOURS)[best]
    raster.triangle[rows, cols] = triangle
    raster.depth[rows, cols] = 1.0 / inverse_depth
    raster.attributes[rows, cols, :3] = (over_depth[:, :, None] * canonical[triangles[triangle]]).sum(axis=1) / inverse_depth[:, None]
    confidence[rows, cols] = RING_CONFIDENCE * confidence[rows + offsets[:, 0], cols + offsets[:, 1]]


def _outside(covered: np.ndarray) -> np.ndarray:
    """Uncovered pixels connected (4-neighbourhood) to the border of the map: not the eye and
    mouth holes."""
    count, labels = cv2.connectedComponents((~covered).view(np.uint8), connectivity=4)
    border = np.zeros(count, bool)
    border[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    border[0] = False  # label 0 is the covered pixels
    return border[labels]


def _barycentrics(pixels: np.ndarray, corners: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Screen-space barycentrics (3, ...) of the points (x, y) in the triangles whose vertex
    indices are ``corners`` (3, ...), outside [0, 1] beyond the triangle's edges."""
    (ax, bx, cx), (ay, by, cy) = (np.ascontiguousarray(axis)[corners] for axis in pixels.T)
    area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)  # rasterised triangles are not degenerate
    wb = ((x - ax) * (cy - ay) - (y - ay) * (cx - ax)) / area
    wc = ((bx - ax) * (y - ay) - (by - ay) * (x - ax)) / area
    return np.stack([1.0 - wb - wc, wb, wc])


def landmark_pixels(normalized: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """(L, 2) pixel positions, pixel centres at integer coordinates."""
    return normalized[:, :2] * np.array(frame_size, np.float64) - 0.5


def fit_head_pose(pixels: np.ndarray, intrinsics: np.ndarray, template: FaceTemplate) -> np.ndarray | None:
    """Canonical -> camera (4, 4) rigid transform fitting the template's rigid landmarks to
    their pixels, or None when no pose in front of the camera fits."""
    rigid = template.rigid
    found, rotation_vector, translation = cv2.solvePnP(
        template.vertices[rigid], pixels[rigid], intrinsics, None, flags=cv2.SOLVEPNP_SQPNP)
    if not found or not np.isfinite(translation).all() or translation[2, 0] <= 0:
        return None
    pose = np.eye(4)
    pose[:3, :3] = cv2.Rodrigues(rotation_vector)[0]
    pose[:3, 3] = translation[:, 0]
    return pose


def landmark_depths(relative_z: np.ndarray, pose: np.ndarray, intrinsics: np.ndarray, width: int,
                    template: FaceTemplate) -> np.ndarray:
    """Camera depth of every landmark: MediaPipe's relative z in metres at the face's distance,
    anchored on the posed template's rigid points (see the module docstring)."""
    rigid = template.rigid
    anchor_depth = float((template.vertices[rigid] @ pose[2, :3] + pose[2, 3]).mean())
    metres_per_unit = width * anchor_depth / intrinsics[0, 0]
    return anchor_depth + (relative_z - relative_z[rigid].mean()) * metres_per_unit


def unproject(pixels: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Camera-space points at ``depth`` along the rays of ``pixels``."""
    x = (pixels[:, 0] - intrinsics[0, 2]) / intrinsics[0, 0]
    y = (pixels[:, 1] - intrinsics[1, 2]) / intrinsics[1, 1]
    return np.stack([x * depth, y * depth, depth], axis=1)


def vertex_facing(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Per vertex, cos of the angle between the outward normal (area-weighted mean of its
    triangles' normals) and the direction to the camera; negative when it faces away."""
    a, b, c = (points[triangles[:, k]] for k in range(3))
    face_normals = np.cross(b - a, c - a)
    corners = triangles.ravel()
    normals = np.stack([np.bincount(corners, np.repeat(face_normals[:, axis], 3), minlength=len(points))
                        for axis in range(3)], axis=1)
    length = np.linalg.norm(normals, axis=1) * np.linalg.norm(points, axis=1)
    return -(normals * points).sum(axis=1) / np.maximum(length, 1e-30)


def _checked_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise InputError(f"A frame is not an RGB image: shape {shape}, type {dtype}.",
                         hint="Frames must be (height, width, 3) uint8 RGB arrays (decode video as rgb24).")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError("A frame has no pixels.", hint="Check the footage.")
    return np.ascontiguousarray(image)


def _checked_intrinsics(intrinsics: np.ndarray | None) -> np.ndarray:
    if intrinsics is None:
        raise InputError("The MediaPipe backend cannot estimate the camera; it needs its intrinsics.",
                         hint="Give the focal length, or use model_runtime.intrinsics.intrinsics_for's default.")
    matrix = np.asarray(intrinsics, np.float64)
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all() or matrix[0, 0] <= 0 or matrix[1, 1] <= 0:
        raise InputError(f"Camera intrinsics must be a 3x3 pinhole matrix with positive focal lengths, "
                         f"got {matrix.tolist()}.",
                         hint="Build them with model_runtime.intrinsics.intrinsics_for.")
    return matrix
