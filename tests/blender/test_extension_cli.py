"""`python -m faceanything_blender capture`: options, failures without tracebacks, and a real
run on a GRID clip that writes the .blend, its point cache beside it, and a preview."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, wait_for

from faceanything_blender.__main__ import build_parser


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "faceanything_blender", "capture", *arguments],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.parametrize("flag, value, shown", [
    ("--frames", "5", "frames: '5' is not FIRST:LAST[:STEP]"),
    ("--focal", "wide", "focal: cannot read the focal length 'wide'"),
    ("--points", "pixel:1:2", "points: cannot read the point request 'pixel:1:2'"),
])
def test_options_the_runtime_refuses_fail_before_blender_starts_with_its_message(tmp_path, flag, value, shown):
    footage = tmp_path / "clip.mp4"
    footage.write_bytes(b"x")
    done = run_cli(str(footage), "-o", str(tmp_path / "out.blend"), flag, value)
    assert done.returncode == 1 and f"error: {shown}" in done.stderr and "hint:" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out.blend").exists()


def test_the_runtime_grammar_of_focal_lengths_is_accepted():
    args = build_parser().parse_args(["capture", "in.mp4", "-o", "o.blend", "--focal", "35mm/23.5", "--frames", "1001:1100"])
    assert (args.focal, args.frames) == ("35mm/23.5", "1001:1100")


def test_missing_footage_fails_with_a_message(tmp_path):
    done = run_cli(str(tmp_path / "nothing.mp4"), "-o", str(tmp_path / "out.blend"))
    assert done.returncode == 1
    assert f"error: The footage {tmp_path / 'nothing.mp4'} does not exist." in done.stderr
    assert "Traceback" not in done.stderr


def test_a_wrong_interpreter_fails_with_a_message(tmp_path):
    footage = tmp_path / "clip.mp4"
    footage.write_bytes(b"x")
    done = run_cli(str(footage), "-o", str(tmp_path / "out.blend"), "--runtime-python", str(tmp_path / "python9"),
                   "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 1
    assert f"error: The runtime interpreter {tmp_path / 'python9'} does not exist." in done.stderr
    assert "hint:" in done.stderr and "Traceback" not in done.stderr


def test_capture_writes_the_blend_its_point_cache_and_a_preview(tmp_path, real_runtime_python, face_clip):
    blend, preview = tmp_path / "out" / "demo.blend", tmp_path / "out" / "preview.png"
    done = run_cli(str(face_clip), "-o", str(blend), "--preview", str(preview), "--frames", "1:10",
                   "--runtime-python", str(real_runtime_python), "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert blend.is_file() and preview.stat().st_size > 0
    assert list((tmp_path / "out" / "demo_faceanything").glob("*.pc2")), "no point cache beside the .blend"
    for stage in ("capture", "reconstruct", "build the scene", "save the .blend", "render the preview"):
        assert any(line.startswith(stage) and line.endswith(" s") for line in done.stdout.splitlines()), stage
    assert f"wrote {blend}" in done.stdout and f"wrote {preview}" in done.stdout
    assert Path(tmp_path / "cache").is_dir()


def test_ctrl_c_cancels_and_keeps_the_capture(tmp_path, fake_runtime_python):
    footage = tmp_path / "clip.mp4"
    footage.write_bytes(b"x")
    cli = subprocess.Popen(
        [sys.executable, "-m", "faceanything_blender", "capture", str(footage), "-o", str(tmp_path / "out.blend"),
         "--runtime-python", str(fake_runtime_python), "--cache-dir", str(tmp_path / "cache")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "FAKE_RUNTIME_HOLD": str(tmp_path / "never")},
    )
    try:
        wait_for(lambda: len(list((tmp_path / "cache").glob("*/frames/*.npz"))) >= 2, "two captured frames")
        cli.send_signal(signal.SIGINT)
        stdout, stderr = cli.communicate(timeout=120)
    finally:
        cli.kill()
    assert cli.returncode == 130, stdout + stderr
    assert "cancelling (finished frames are kept)" in stdout
    assert "Run the same command again to resume." in stderr and "Traceback" not in stderr
    assert len(list((tmp_path / "cache").glob("*/frames/*.npz"))) == 2


def test_a_failed_capture_leaves_the_output_blend_and_its_backup_untouched(tmp_path, fake_runtime_python):
    footage = tmp_path / "clip.mp4"
    footage.write_bytes(b"x")
    output, backup = tmp_path / "shot.blend", tmp_path / "shot.blend1"
    output.write_bytes(b"the artist's work")
    backup.write_bytes(b"the artist's earlier work")
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "faceanything_blender", "capture", str(footage), "-o", str(output),
             "--runtime-python", str(fake_runtime_python), "--cache-dir", str(tmp_path / "cache")],
            cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "FAKE_RUNTIME_FAIL": "bad_input"},
        )
        assert done.returncode == 1 and "cannot be read" in done.stderr, done.stdout + done.stderr
        assert output.read_bytes() == b"the artist's work"
        assert backup.read_bytes() == b"the artist's earlier work"
    assert sorted(path.name for path in tmp_path.glob("*shot*")) == ["shot.blend", "shot.blend1"]


def test_a_failed_first_capture_writes_no_blend(tmp_path, fake_runtime_python):
    footage = tmp_path / "clip.mp4"
    footage.write_bytes(b"x")
    done = subprocess.run(
        [sys.executable, "-m", "faceanything_blender", "capture", str(footage), "-o", str(tmp_path / "new.blend"),
         "--runtime-python", str(fake_runtime_python), "--cache-dir", str(tmp_path / "cache")],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "FAKE_RUNTIME_FAIL": "bad_input"},
    )
    assert done.returncode == 1
    assert not (tmp_path / "new.blend").exists() and not (tmp_path / "new.blend1").exists()
