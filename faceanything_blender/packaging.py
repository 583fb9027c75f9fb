"""`make extension`: the installable extension zip, built and validated by Blender's own builder.

    python -m faceanything_blender.packaging --output-dir build

The zip's layout is the add-on's files at the top, ``blender_manifest.toml`` and the runtime
package ``model_runtime/`` inside (the runtime runs from there in its own environment). Both
packages hold the product only (benchmarks live in bench/, tests and fixtures in tests/), so only
compiled files, logs, hidden files and this builder are left out. A development checkout can also be turned
into an extension without building anything (`enable_checkout`): the same layout made of links to
the checkout, in a temporary extension repository. The headless CLI and the tests run the add-on that way.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ADDON_DIR_NAME = "faceanything_blender"
RUNTIME_DIR_NAME = "model_runtime"
MANIFEST_NAME = "blender_manifest.toml"
EXCLUDED_NAMES = {"__pycache__"}
DEVELOPER_TOOLS = {"packaging.py"}
"""Add-on files for developers only, left out of the extension: this builder. In the zip it would
also shadow PyPI's `packaging` for the runtime, which runs with the extension's folder on its path."""
EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".log"}
CHECKOUT_REPO_MODULE = "faceanything_checkout"


class PackagingError(Exception):
    pass


def is_excluded(path: Path) -> bool:
    return path.name in EXCLUDED_NAMES or path.suffix in EXCLUDED_SUFFIXES or path.name.startswith(".")


def manifest(repo_root: Path = REPO_ROOT) -> dict:
    with open(repo_root / MANIFEST_NAME, "rb") as file:
        return tomllib.load(file)


def package_entries(repo_root: Path = REPO_ROOT) -> list[tuple[Path, str]]:
    """(source, name at the top of the extension) for everything the extension holds."""
    addon = repo_root / ADDON_DIR_NAME
    entries = [(path, path.name) for path in sorted(addon.iterdir())
               if not is_excluded(path) and path.name not in DEVELOPER_TOOLS]
    entries.append((repo_root / MANIFEST_NAME, MANIFEST_NAME))
    entries.append((repo_root / RUNTIME_DIR_NAME, RUNTIME_DIR_NAME))
    return entries


def stage(stage_dir: Path, repo_root: Path = REPO_ROOT) -> Path:
    """Copy the extension's files into `stage_dir` (created) and return it."""
    stage_dir.mkdir(parents=True, exist_ok=True)

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {name for name in names if is_excluded(Path(folder) / name)}

    for source, name in package_entries(repo_root):
        if source.is_dir():
            shutil.copytree(source, stage_dir / name, ignore=ignore)
        else:
            shutil.copy2(source, stage_dir / name)
    return stage_dir


def link_checkout(repository_dir: Path, repo_root: Path = REPO_ROOT) -> Path:
    """Make ``repository_dir/<id>/`` an extension whose files are links into the checkout."""
    extension_dir = repository_dir / manifest(repo_root)["id"]
    extension_dir.mkdir(parents=True)
    for source, name in package_entries(repo_root):
        os.symlink(source, extension_dir / name, target_is_directory=source.is_dir())
    return extension_dir


def builder_script() -> Path:
    """Blender's extension builder, shipped inside the bpy module."""
    import bpy

    script = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    if not script.is_file():
        raise PackagingError(f"Blender's extension builder is missing ({script}); reinstall bpy (make blender).")
    return script


def run_builder(*arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, str(builder_script()), *arguments], capture_output=True, text=True, check=False
    )
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise PackagingError(f"blender_ext.py {arguments[0]} failed:\n{output}")
    return output


def build(output_dir: Path, repo_root: Path = REPO_ROOT) -> Path:
    """Stage, build and validate the extension zip; returns its path."""
    info = manifest(repo_root)
    output_dir.mkdir(parents=True, exist_ok=True)
    zip_path = output_dir / f"{info['id']}-{info['version']}.zip"
    with tempfile.TemporaryDirectory(prefix="faceanything-stage-") as temporary:
        staged = stage(Path(temporary) / info["id"], repo_root)
        run_builder("build", "--source-dir", str(staged), "--output-filepath", str(zip_path))
    run_builder("validate", str(zip_path))
    return zip_path


def enable_checkout(repo_root: Path = REPO_ROOT, module: str = CHECKOUT_REPO_MODULE) -> str:
    """Enable the checkout as an extension in this Blender session; returns its package name.

    The repository lives in a temporary folder (removed by `disable_checkout`) and is not saved
    in the preferences.
    """
    import addon_utils
    import bpy

    directory = Path(tempfile.mkdtemp(prefix="faceanything-checkout-"))
    link_checkout(directory, repo_root)
    bpy.context.preferences.extensions.repos.new(
        name="Face Anything checkout", module=module, custom_directory=str(directory), source="USER"
    )
    package = f"bl_ext.{module}.{manifest(repo_root)['id']}"
    errors: list[BaseException] = []
    addon_utils.enable(package, default_set=True, handle_error=errors.append)
    if errors or package not in bpy.context.preferences.addons:
        disable_checkout(package)
        cause = f": {errors[0]}" if errors else ""
        raise PackagingError(f"The add-on in {repo_root} could not be enabled{cause}")
    return package


def disable_checkout(package: str) -> None:
    """Undo `enable_checkout`: drop the repository (Blender disables its add-on) and its folder."""
    import bpy

    module = package.split(".")[1]
    repos = bpy.context.preferences.extensions.repos
    for repo in list(repos):
        if repo.module == module:
            directory = repo.custom_directory
            repos.remove(repo)
            shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faceanything_blender.packaging", description="Build the zip.")
    parser.add_argument("--output-dir", type=Path, default=Path("build"), help="where the zip goes (default build)")
    args = parser.parse_args(argv)
    try:
        zip_path = build(args.output_dir.resolve())
    except (PackagingError, OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built and validated {zip_path} ({zip_path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
