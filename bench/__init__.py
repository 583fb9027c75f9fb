"""Benchmarks behind `make bench`: speed (speed.py), the network (../bench_network.py) and
accuracy against exactly known ground truth (sequences.py -> render_gt.py -> accuracy.py,
scored by metrics.py), written up by report.py.

Only render_gt.py imports bpy; it is a rendering tool run by Blender's Python, never imported by
the runtime.
"""
