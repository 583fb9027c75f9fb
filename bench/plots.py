"""PNG plots of the accuracy benchmark (matplotlib, drawn off screen)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.tri import Triangulation  # noqa: E402

COLOURS = {"MediaPipe landmarks": "tab:red", "truth": "tab:gray"}


def _colour(label: str):
    if label in COLOURS:
        return COLOURS[label]
    return "tab:cyan" if "smoothing off" in label else "tab:blue"


def error_over_time(series: dict[str, dict[str, np.ndarray]], path: Path) -> Path:
    """One panel per sequence: mean end-point error per frame for each method.
    series: sequence -> method -> (T,) errors."""
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False, sharey=True)
    for ax, (name, methods) in zip(axes[0], series.items()):
        for label, values in methods.items():
            dashed = label == "MediaPipe landmarks"  # drawn dashed on top: it often overlaps ours without smoothing
            ax.plot(values, label=label, color=_colour(label), lw=1.4, ls="--" if dashed else "-",
                    zorder=3 if dashed else 2)
        ax.set_title(name)
        ax.set_xlabel("frame")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("2D end-point error (px)")
    axes[0, 0].legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def error_by_motion(bins: list[tuple[float, float]], methods: dict[str, list[float]], counts: list[int],
                    path: Path) -> Path:
    """Grouped bars: mean end-point error per bin of true motion (px/frame)."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.8 / max(len(methods), 1)
    positions = np.arange(len(bins))
    for i, (label, values) in enumerate(methods.items()):
        ax.bar(positions + (i - (len(methods) - 1) / 2) * width, values, width, label=label, color=_colour(label))
    ax.set_xticks(positions, [f"{low:g}-{high:g}\n(n={n})" if np.isfinite(high) else f">{low:g}\n(n={n})"
                              for (low, high), n in zip(bins, counts)], fontsize=8)
    ax.set_xlabel("true motion since the previous frame (px)")
    ax.set_ylabel("mean end-point error (px)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def vertex_error_maps(meshes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: Path) -> Path:
    """Side-by-side heat maps of per-vertex 3D error (mm) drawn on each mesh seen from the front.
    meshes: label -> (canonical vertices (V, 3), triangles (F, 3), per-vertex error (V,), NaN = not scored)."""
    values = np.concatenate([error[np.isfinite(error)] for _, _, error in meshes.values()])
    top = float(np.percentile(values, 95)) if values.size else 1.0
    fig, axes = plt.subplots(1, len(meshes), figsize=(4.2 * len(meshes), 4.4), squeeze=False)
    image = None
    for ax, (label, (vertices, triangles, error)) in zip(axes[0], meshes.items()):
        scored = np.isfinite(error)[triangles].all(axis=1)
        ax.triplot(Triangulation(vertices[:, 0], vertices[:, 1], triangles), color="0.85", lw=0.2)
        if scored.any():
            grid = Triangulation(vertices[:, 0], vertices[:, 1], triangles[scored])
            image = ax.tripcolor(grid, np.nan_to_num(error), shading="gouraud", cmap="magma", vmin=0, vmax=top)
        scored_mean = f"\nmean over vertices {np.nanmean(error):.1f} mm" if np.isfinite(error).any() else ""
        ax.set_title(label + scored_mean, fontsize=9)
        ax.set_aspect("equal")
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="3D error after rigid alignment (mm)")
    return _save(fig, path, tight=False)


def jitter_bars(groups: dict[str, dict[str, float]], path: Path) -> Path:
    """Grouped bars of jitter (px/frame^2) per clip: raw landmarks, ours before and after smoothing."""
    labels = list(dict.fromkeys(label for methods in groups.values() for label in methods))
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(groups)), 3.4))
    width = 0.8 / max(len(labels), 1)
    positions = np.arange(len(groups))
    for i, label in enumerate(labels):
        values = [methods.get(label, np.nan) for methods in groups.values()]
        ax.bar(positions + (i - (len(labels) - 1) / 2) * width, values, width, label=label, color=_colour(label))
    ax.set_xticks(positions, list(groups), fontsize=8, rotation=20)
    ax.set_ylabel("jitter: mean |acceleration| (px/frame²)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def _save(fig, path: Path, tight: bool = True) -> Path:
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
