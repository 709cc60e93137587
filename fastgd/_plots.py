"""Pictures for the command line: the seed walkthrough as an animated GIF, loss curves.

matplotlib (and Pillow, which it requires) are optional. Figures are drawn with the
object-oriented API on an Agg canvas, never through pyplot, so that nothing here changes a
user's matplotlib backend or global state. Files are written atomically.
"""

from __future__ import annotations

import os

import numpy as np

from fastgd._files import atomic_write

INSTALL = "pip install 'fastgd[cli]' (or just matplotlib)"
FORMATS = ("png", "svg", "pdf", "jpg", "jpeg", "webp")


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True


def check_output(path, formats=FORMATS) -> str:
    """The picture format `path` asks for (by its suffix); a ValueError, before any work is
    done, if matplotlib is missing or the suffix is not a format it writes."""
    if not available():
        raise ValueError(f"writing {os.fspath(path)!r} needs matplotlib: {INSTALL}")
    suffix = os.fspath(path).lower().rsplit(".", 1)[-1] if "." in os.fspath(path) else ""
    if suffix not in formats:
        raise ValueError(f"picture file {os.fspath(path)!r}: give it one of the suffixes "
                         f"{', '.join('.' + f for f in formats)}")
    return suffix


def loss_curves(path, curves: dict, *, title: str, xlabel: str = "epoch",
                ylabel: str = "loss") -> None:
    """One line per curve (label -> values per epoch), on a log scale when all are > 0."""
    fig = figure(6.4, 4.0)
    axes = fig.add_subplot()
    for label, values in curves.items():
        values = np.asarray(values, dtype=float)
        axes.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3,
                  label=label)
    if all(np.all(np.asarray(v, dtype=float) > 0) for v in curves.values()):
        axes.set_yscale("log")
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend()
    fig.tight_layout()
    save(fig, path)


def save(fig, path) -> None:
    """Write a figure to `path`, in the format of its suffix, atomically."""
    with atomic_write(path) as f:
        fig.savefig(f, format=check_output(path), dpi=100)


def seed_animation(path, x, y, frames, *, seconds_per_frame: float = 0.7) -> None:
    """An animated GIF of the line ŷ = w x + b moving towards the points (x, y): one frame
    per (iteration, w, b, loss) in `frames`, with each point's error drawn to the line."""
    from PIL import Image

    images = []
    xs = np.array([0.0, x.max() + 1.0])
    for iteration, w, b, loss in frames:
        fig = figure(5.0, 3.75)
        axes = fig.add_subplot()
        y_hat = w * x + b
        axes.vlines(x, np.minimum(y, y_hat), np.maximum(y, y_hat), colors="tab:red",
                    linestyles="dashed", label="error ŷ − y")
        axes.plot(xs, w * xs + b, color="tab:blue", linewidth=2, label=f"ŷ = {w:.3f} x "
                  f"{'+' if b >= 0 else '−'} {abs(b):.3f}")
        axes.scatter(x, y, color="black", zorder=3, label="data")
        axes.set(xlim=(xs[0], xs[1]), ylim=(-1.0, y.max() + 3.0), xlabel="x", ylabel="y",
                 title=f"iteration {iteration}: mean squared error {loss:.4f}")
        axes.grid(True, alpha=0.3)
        axes.legend(loc="upper left")
        fig.tight_layout()
        fig.canvas.draw()
        images.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB"))
    durations = [int(seconds_per_frame * 1000)] * len(images)
    durations[-1] *= 3  # rest on the fitted line before the loop starts again
    with atomic_write(path) as f:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                       duration=durations, loop=0)


def figure(width: float, height: float):
    """A matplotlib Figure on its own Agg canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig
