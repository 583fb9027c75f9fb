""""Set up runtime": a real virtual environment from the system's Python 3.11, offline (pip
--no-index and a stand-in runtime package), the step that fails named, Blender's own Python
refused, cancel, and the operator's online-access check."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import bpy
import pytest
from conftest import wait_for

from faceanything_blender.runtime_paths import venv_python
from faceanything_blender.runtime_setup import RuntimeSetup, SetupFailed, find_base_python

HEALTH = {"version": "stand-in", "python": "3.11", "backends": {"mediapipe": "x"}, "devices": [], "packages": {}}


def stand_in_runtime(root: Path, requirement: str = "") -> Path:
    """A runtime source folder with requirement files and a `health` command (no real packages)."""
    package = root / "model_runtime"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(f"import json\nprint(json.dumps({HEALTH!r}))\n")
    (package / "requirements.txt").write_text(f"# stand-in\n{requirement}\n")
    (package / "requirements-nodeps.txt").write_text("# stand-in\n")
    return root


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def venv_dir(tmp_path_factory):
    if not shutil.which("python3.11"):
        pytest.skip("no python3.11 on PATH to build an environment from")
    return tmp_path_factory.mktemp("setup") / "runtime-venv"


def run_setup(setup: RuntimeSetup):
    setup.start()
    setup.join(timeout_s=600)
    return setup.snapshot()


def test_setup_makes_an_environment_and_checks_the_runtime(venv_dir, tmp_path):
    log = tmp_path / "setup.log"
    setup = RuntimeSetup(venv_dir, stand_in_runtime(tmp_path / "src"), pip_options=["--no-index"], log_path=log)
    state = run_setup(setup)
    assert state.status == "DONE", state.message
    assert state.health == json.loads(json.dumps(HEALTH))
    assert venv_python(venv_dir).exists() and venv_python(venv_dir) != Path(sys.executable)
    text = log.read_text()
    assert "== step 5 of 5: check the runtime" in text and "--no-deps" in text


def test_a_failing_step_is_named_with_what_to_do(venv_dir, tmp_path):
    log = tmp_path / "setup.log"
    source = stand_in_runtime(tmp_path / "src", requirement="faceanything-no-such-package")
    state = run_setup(RuntimeSetup(venv_dir, source, pip_options=["--no-index"], log_path=log))
    assert state.status == "ERROR"
    assert state.message.startswith(
        "Step 3 of 5 (install the runtime's packages) failed: python -m pip exited with code 1"
    )
    assert "faceanything-no-such-package" in state.message
    assert "internet connection" in state.hint and str(log) in state.hint


def test_only_a_python_3_11_that_is_not_blenders_will_do(tmp_path):
    newer = script(tmp_path / "python3.12", "echo '{\"version\": [3, 12], \"prefix\": \"/opt/py312\"}'\n")
    with pytest.raises(SetupFailed) as error:
        find_base_python(str(newer))
    assert f"{newer} (Python 3.12)" in error.value.detail and "Install Python 3.11" in error.value.hint
    with pytest.raises(SetupFailed, match=r"\(Blender's own Python\)"):
        find_base_python(sys.executable)
    with pytest.raises(SetupFailed, match=r"\(does not run\)"):
        find_base_python(str(tmp_path / "missing"))


def test_cancel_stops_the_running_step(tmp_path):
    base = script(tmp_path / "python3.11", (
        'if [ "$1" = "-c" ]; then echo \'{"version": [3, 11], "prefix": "/opt/py311"}\'; exit 0; fi\n'
        "echo creating\nexec sleep 600\n"
    ))
    setup = RuntimeSetup(tmp_path / "venv", stand_in_runtime(tmp_path / "src"), base_python=str(base))
    setup.start()
    wait_for(lambda: setup.snapshot().last_line == "creating", "the environment step")
    assert setup.snapshot().step == 2 and setup.snapshot().status == "RUNNING"
    setup.cancel()
    setup.join(timeout_s=60)
    assert setup.snapshot().status == "CANCELLED"


def test_setup_operator_asks_for_online_access_first(addon, scene):
    assert not bpy.app.online_access
    with pytest.raises(RuntimeError, match="online access is off"):
        bpy.ops.faceanything.setup_runtime()
    assert addon.runtime_tasks.setup_state() is None
