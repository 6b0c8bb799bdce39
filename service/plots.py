"""PNG renders of results: charts with matplotlib (object API, no pyplot state), drawn one at a
time on this process's chart thread (`render`), and image grids with plain numpy."""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.fashion_mnist import IMAGE_SIZE
from service.errors import InvalidParameter
from service.imaging import png_bytes, to_uint8, upscale

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GAP = 2  # pixels between grid cells
GAP_VALUE = 96  # mid-grey, visible between dark Fashion-MNIST backgrounds
DPI = 100
MAX_CHART_ROWS = 32  # a classification chart of more images would not be readable
EXPLANATION_COLUMNS = 4  # panels per row of an explanation chart
EXPLANATION_PANEL = (2.4, 2.8)  # inches per panel: the image, its colour bar and its title
# The largest image grid drawn, width x height (as FMNIST_MAX_IMAGE_PIXELS bounds what is
# decoded): 16 MiB of pixels to draw and a PNG to compress. 256 images at scale 16 would be
# 104 megapixels.
MAX_GRID_PIXELS = 4096 * 4096
COMPARISON_COLUMNS = 16
# matplotlib keeps state per thread (for each font, an object holding the open .ttf file) and
# draws holding the GIL. Drawn in the server's thread pool, concurrent charts spread over up to
# 40 threads: each ran slower than the last (under load past the request deadline, and a chart
# whose request was dropped still ran to the end), and each new thread that drew added open
# files and memory. One thread per process keeps both fixed, and a chart whose request was
# dropped before its turn is never drawn.
_CHART_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chart")


async def render(chart: Callable[..., bytes], *args: Any) -> bytes:
    """`chart(*args)` (`classification_chart`, `embedding_map`) drawn on the chart thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_CHART_THREAD, functools.partial(chart, *args))


def _new_figure(**options: Any) -> Figure:
    """A matplotlib figure. matplotlib is imported on the first chart, not at start-up: its
    import is a third of a worker's start-up time, and most requests never draw a chart."""
    from matplotlib.figure import Figure

    return Figure(**options)


def _figure_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def classification_chart(
    images: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    flags: np.ndarray,
) -> bytes:
    """One row per image: the model's 28x28 input beside a bar chart of its probabilities;
    an image flagged as out of distribution (`flags`) says so in red above its bars."""
    rows = len(images)
    figure = _new_figure(figsize=(7.5, 1.9 * rows + 0.2), layout="constrained")
    axes = figure.subplots(rows, 2, squeeze=False, width_ratios=(1, 2.6))
    positions = np.arange(len(class_names))
    for i, (image, probs) in enumerate(zip(images, probabilities, strict=True)):
        picture, bars = axes[i]
        picture.imshow(image, cmap="gray", vmin=0, vmax=1)
        picture.set_axis_off()
        picture.set_title(f"input {i + 1}", fontsize=9)
        best = int(probs.argmax())
        colours = ["tab:orange" if c == best else "tab:blue" for c in positions]
        bars.barh(positions, probs, color=colours)
        bars.set_yticks(positions, class_names, fontsize=7)
        bars.invert_yaxis()
        bars.set_xlim(0, 1)
        bars.tick_params(axis="x", labelsize=7)
        title = f"{class_names[best]} ({probs[best]:.1%})"
        if flags[i]:
            bars.set_title(f"{title}: unlike the training images", fontsize=9, color="tab:red")
        else:
            bars.set_title(title, fontsize=9)
    return _figure_png(figure)


def embedding_map(
    pca_map: dict[str, Any],
    coordinates: np.ndarray,
    class_names: Sequence[str],
    title: str,
    flags: np.ndarray | None = None,
) -> bytes:
    """The training-set PCA map (points coloured by class) with the inputs numbered on it;
    inputs flagged as out of distribution (`flags`, classifiers only) are red crosses."""
    figure = _new_figure(figsize=(8, 6.5), layout="constrained")
    axes = figure.subplots()
    points = np.asarray(pca_map["points"])
    labels = np.asarray(pca_map["point_labels"])
    for class_id, name in enumerate(class_names):
        chosen = points[labels == class_id]
        axes.scatter(chosen[:, 0], chosen[:, 1], s=6, alpha=0.45, label=name, color=f"C{class_id}")
    flagged = np.zeros(len(coordinates), bool) if flags is None else np.asarray(flags, bool)
    for chosen, marker, colour, label in (
        (~flagged, "*", "black", "inputs"),
        (flagged, "X", "tab:red", "inputs unlike the training images"),
    ):
        if chosen.any():
            axes.scatter(
                coordinates[chosen, 0],
                coordinates[chosen, 1],
                s=160,
                marker=marker,
                color=colour,
                edgecolors="white",
                linewidths=0.8,
                label=label,
                zorder=3,
            )
    for i, (x, y) in enumerate(coordinates):
        axes.annotate(str(i + 1), (x, y), xytext=(5, 5), textcoords="offset points", fontsize=9)
    ratios = pca_map.get("explained_variance_ratio", [0.0, 0.0])
    axes.set_xlabel(f"PC 1 ({ratios[0]:.0%} of variance)")
    axes.set_ylabel(f"PC 2 ({ratios[1]:.0%} of variance)")
    axes.set_title(title)
    legend = axes.legend(fontsize=7, loc="best")
    for handle in legend.legend_handles:  # legend markers of one size, whatever the plot's
        handle.set_sizes([30])
    return _figure_png(figure)


def explanation_chart(
    images: np.ndarray,
    maps: np.ndarray,
    class_ids: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
) -> bytes:
    """Each model input in grey under its attribution map, EXPLANATION_COLUMNS panels a row: red
    supports the class, blue counts against it, on a scale symmetric about 0 that is each map's
    own (its colour bar) and more opaque where the attribution is larger; the title names the
    class explained and its probability."""
    count = len(images)
    columns = min(count, EXPLANATION_COLUMNS)
    rows = -(-count // columns)
    width, height = EXPLANATION_PANEL
    figure = _new_figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for panel in axes[count:]:
        panel.set_axis_off()
    for panel, image, attribution, class_id, probability in zip(
        axes, images, maps, class_ids, probabilities, strict=False
    ):
        scale = float(np.abs(attribution).max()) or 1.0  # an all-zero map: any scale will do
        panel.imshow(image, cmap="gray", vmin=0, vmax=1)
        overlay = panel.imshow(
            attribution,
            cmap="RdBu_r",
            vmin=-scale,
            vmax=scale,
            alpha=np.abs(attribution) / scale * 0.85,
        )
        panel.set_axis_off()
        panel.set_title(f"{class_names[class_id]} ({probability:.1%})", fontsize=9)
        bar = figure.colorbar(
            overlay, ax=panel, orientation="horizontal", fraction=0.05, pad=0.02, format="{x:.2g}"
        )
        bar.set_ticks([-scale, 0, scale])
        bar.ax.tick_params(labelsize=7)
    return _figure_png(figure)


def check_chart_rows(count: int, what: str = "chart") -> None:
    """`InvalidParameter` when a PNG `what` of one row per image would show more than
    MAX_CHART_ROWS images."""
    if count > MAX_CHART_ROWS:
        raise InvalidParameter(
            f"a PNG {what} shows at most {MAX_CHART_ROWS} images; ask for JSON instead"
        )


def grid_size(cells: int, columns: int, scale: int) -> tuple[int, int]:
    """Width and height of a `grid` of `cells` cells: columns * (28 * scale) + (columns + 1) *
    GAP wide, likewise high for the rows."""
    rows = -(-cells // columns)
    side = IMAGE_SIZE * scale
    return columns * side + (columns + 1) * GAP, rows * side + (rows + 1) * GAP


def check_grid_size(cells: int, columns: int, scale: int) -> None:
    """`InvalidParameter` when a `grid` would have more than MAX_GRID_PIXELS pixels, with the
    largest scale that would fit. Routes call it before the work the picture needs."""
    width, height = grid_size(cells, columns, scale)
    if width * height <= MAX_GRID_PIXELS:
        return
    smaller = (s for s in range(scale - 1, 0, -1) if _fits(grid_size(cells, columns, s)))
    fitting = next(smaller, None)
    advice = f"use scale={fitting} or less, or fewer images" if fitting else "use fewer images"
    raise InvalidParameter(
        f"the PNG would be {width}x{height}, {width * height} pixels; the limit is "
        f"{MAX_GRID_PIXELS}: {advice}"
    )


def _fits(size: tuple[int, int]) -> bool:
    return size[0] * size[1] <= MAX_GRID_PIXELS


def grid(cells: Sequence[np.ndarray | None], columns: int, scale: int) -> bytes:
    """Float 28x28 images (None: an empty cell) row-major in `columns`, each enlarged `scale`
    times by nearest neighbour, GAP pixels apart and around (see `grid_size`); at most
    MAX_GRID_PIXELS pixels."""
    check_grid_size(len(cells), columns, scale)
    width, height = grid_size(len(cells), columns, scale)
    side = IMAGE_SIZE * scale
    canvas = np.full((height, width), GAP_VALUE, dtype=np.uint8)
    for index, cell in enumerate(cells):
        row, column = divmod(index, columns)
        top, left = GAP + row * (side + GAP), GAP + column * (side + GAP)
        content = (
            np.zeros((side, side), np.uint8) if cell is None else upscale(to_uint8(cell), scale)
        )
        canvas[top : top + side, left : left + side] = content
    return png_bytes(canvas)


def check_comparison_grid_size(count: int, scale: int, columns: int = COMPARISON_COLUMNS) -> None:
    """`check_grid_size` for a `comparison_grid` of `count` pairs."""
    columns = min(columns, count)
    check_grid_size(2 * -(-count // columns) * columns, columns, scale)


def comparison_grid(
    originals: np.ndarray,
    reconstructions: np.ndarray,
    scale: int,
    columns: int = COMPARISON_COLUMNS,
) -> bytes:
    """Originals above their reconstructions, `columns` pairs per band of two rows."""
    count = len(originals)
    columns = min(columns, count)
    cells: list[np.ndarray | None] = []
    for start in range(0, count, columns):
        band = range(start, start + columns)
        cells += [originals[i] if i < count else None for i in band]
        cells += [reconstructions[i] if i < count else None for i in band]
    return grid(cells, columns, scale)
