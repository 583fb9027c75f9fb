"""4D reconstruction: a capture folder of per-frame maps in, an animated mesh, tracked points and
head pose out (the layout is in `model_runtime/reconstruction_format.py`).

Modules: `options` (what the user chooses), `mesh` (template subdivision, dense seeding),
`tracking` (canonical look-up in one frame), `pose` (rigid head pose), `sequence` (the tracking
pass over the clip), `reading` (frames read and indexed by a thread ahead of the tracker), `store` (the
clip's tracks on disk), `fill` (unseen vertices and frames), `smoothing`, `points` (named and
user points), `pipeline` (`reconstruct`), `export` (CSV, OBJ, PLY). Captures with known motion
for tests are in tests/fixtures/synthetic.py; the measurements behind the defaults in bench/.
"""
from ..option_schema import PointRequest
from .options import ReconstructOptions, parse_points
from .pipeline import reconstruct

__all__ = ["PointRequest", "ReconstructOptions", "parse_points", "reconstruct"]
