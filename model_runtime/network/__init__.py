"""The Face Anything network: built from the depth-anything-3 package (model.py), its weights
loaded without running code and converted to safetensors (checkpoint.py), its rays turned into
intrinsics (rays.py), and its canonical space mapped to the template's (canonical_alignment.py).
Pure code: device choice, pre- and post-processing live in backends/faceanything.py."""
