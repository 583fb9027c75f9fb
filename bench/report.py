"""The benchmark report: markdown sections and PNG images gathered into one folder.

Every part of `make bench` writes into the same `Report`: `section(title, markdown)` adds a
section, `add_image(path, caption)` shows a PNG (saved inside the report folder) under the
latest section, and `write()` saves ``report.md``.
"""
from __future__ import annotations

import datetime
import platform
import shutil
from pathlib import Path


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; floats are written with 3 significant digits, None as "-"."""
    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return "nan" if value != value else f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    def __init__(self, folder: Path, title: str = "Benchmarks"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.title = title
        self._blocks: list[str] = []

    def section(self, title: str, markdown: str) -> None:
        self._blocks.append(f"## {title}\n\n{markdown.strip()}\n")

    def text(self, markdown: str) -> None:
        """More markdown under the latest section."""
        self._blocks.append(markdown.strip() + "\n")

    def add_image(self, path: Path, caption: str) -> None:
        """Show a PNG under the latest section; one saved elsewhere is copied into the report folder."""
        path = Path(path).resolve()
        if not path.is_relative_to(self.folder.resolve()):
            path = Path(shutil.copy2(path, self.folder / path.name)).resolve()
        relative = path.relative_to(self.folder.resolve())
        self._blocks.append(f"![{caption}]({relative.as_posix()})\n\n*{caption}*\n")

    def image_path(self, name: str) -> Path:
        """Where a part should save an image called `name`."""
        return self.folder / name

    def write(self) -> Path:
        when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        header = f"# {self.title}\n\nWritten {when} on {platform.node()} ({platform.machine()}, " \
                 f"Python {platform.python_version()}) by `make bench`.\n"
        path = self.folder / "report.md"
        path.write_text("\n".join([header] + self._blocks), encoding="utf-8")
        return path
