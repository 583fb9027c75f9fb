"""Reading parts of a reconstruction without holding the clip in memory."""
from __future__ import annotations

import numpy as np

from model_runtime.reconstruction_format import vertex_columns


def test_vertex_columns_reads_some_vertices_of_every_frame_in_runs(tmp_path):
    vertices = np.random.default_rng(0).normal(size=(601, 40, 3)).astype(np.float32)
    np.save(tmp_path / "vertices.npy", vertices)
    columns = np.array([0, 5, 39, 5])
    np.testing.assert_array_equal(vertex_columns(tmp_path, columns, frames_at_once=256), vertices[:, columns])
    np.testing.assert_array_equal(vertex_columns(tmp_path, columns, frames_at_once=1000), vertices[:, columns])
