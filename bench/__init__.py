"""The benchmarks behind `make bench`; none of this ships in the extension.

Runtime side (`.venv-runtime/bin/python -m bench`, see __main__.py): capture and reconstruction
speed side by side (speed.py), smoothing candidates and cost per frame (reconstruction.py), the
network on the CPU (network.py), and accuracy against exactly known ground truth
(sequences.py -> render_gt.py -> groundtruth.py -> accuracy.py, scored by metrics.py, written up
by accuracy_report.py and plots.py). report.py gathers them into bench/report.md.

Blender side (`.venv-blender/bin/python -m bench.scene`): scene build, file size and playback ->
bench/scene.md. render_gt.py and scene.py import bpy and run under Blender's Python only.
"""
