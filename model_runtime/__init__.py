"""Face Anything model runtime: footage in, per-frame depth and canonical maps out, and the
4D reconstruction built from them. Runs in its own Python environment, driven by the CLI
(`python -m model_runtime`) or by the Blender extension through `serve`. Never imports bpy."""

__version__ = "0.1.0"
