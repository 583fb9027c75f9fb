"""Custom properties that mark what a capture created, so a re-run replaces only its own data."""

# On every object, collection, action and object data a capture creates: the capture's id.
CAPTURE_KEY = "faceanything_capture"
# On every point empty: the tracked point's name (e.g. "mouth_corner_L").
POINT_KEY = "faceanything_point"
