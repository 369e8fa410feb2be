"""PNG plots for the command line: benchmark results and the model's predictions.

matplotlib is optional (``pip install 'amorsize-dask[plot]'``) and imported only when
a plot is drawn. Figures are rendered with the Agg backend on a private canvas, so
the global pyplot state (and any interactive backend a caller uses) is left alone.

>>> import tempfile, pathlib
>>> from amorsize_dask.learning.records import make_record
>>> rec = make_record(fingerprint="0" * 16, fingerprint_fields={}, workload="1" * 16,
...                   function="mymodule.work", features={"n_items": 100}, engine="serial",
...                   n_workers=1, chunksize=100, source="sample", wall_seconds=0.5,
...                   compute_seconds=0.4, predicted_seconds=0.4)
>>> with tempfile.TemporaryDirectory() as tmp:
...     out = plot_predictions([rec], pathlib.Path(tmp) / "pred.png")
...     out.read_bytes()[:8] == PNG_SIGNATURE
True
"""

from __future__ import annotations

import math
import os
import pathlib
import statistics
from typing import Iterable, Sequence

__all__ = ["plot_bench", "plot_predictions", "bench_figure", "predictions_figure",
           "prediction_pairs", "require_matplotlib", "PNG_SIGNATURE"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MISSING = "plotting needs matplotlib: pip install 'amorsize-dask[plot]'"

# One colour per method / source, from the colour-blind-safe Okabe-Ito palette.
_BENCH_SERIES = (
    ("ours", "amorsize_dask (cold)", "#0072B2"),
    ("oracle", "oracle (best of grid)", "#009E73"),
    ("pool_default", "multiprocessing Pool.map", "#E69F00"),
    ("joblib_default", "joblib Parallel(n_jobs=-1)", "#CC79A7"),
)
# A ratio ours / oracle above this is written in red: more than 50% slower than the best.
_SLOW_RATIO = 1.5
_SOURCE_COLOURS = {"model": "#0072B2", "sample": "#E69F00", "explore": "#009E73",
                   "default": "#999999"}


def require_matplotlib() -> None:
    """Raise ``RuntimeError`` with the install command when matplotlib is missing.

    Cheap to call before a long run (e.g. the benchmark) whose result is to be plotted.
    """
    _figure_factory()


def _figure_factory():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError(MISSING) from None

    def new_figure(**kwargs):
        fig = Figure(**kwargs)
        FigureCanvasAgg(fig)     # Agg, whatever backend pyplot uses
        return fig

    return new_figure


def _seconds_axis(axis, lo: float, hi: float) -> None:
    """Log-scale ticks at 1-2-5 x 10^k (1 x 10^k over wide ranges), labelled "2 ms", "1 s"."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from .planning.plan import format_seconds

    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = (1.0, 2.0, 5.0) if decades <= 4 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda value, _pos: format_seconds(value)))
    axis.set_minor_formatter(NullFormatter())


def _save(fig, path) -> pathlib.Path:
    path = pathlib.Path(os.fspath(path))
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    return path


def plot_bench(results: Sequence, path) -> pathlib.Path:
    """Grouped bars per workload family: ours, the oracle, ``Pool.map`` and joblib.

    Parameters
    ----------
    results : sequence of :class:`amorsize_dask.bench.local.FamilyResult`
        As returned by :func:`amorsize_dask.bench.local.run`.
    path : str or os.PathLike
        The PNG to write.

    Seconds are on a log scale (families differ by orders of magnitude); the ratio
    ours / oracle is written above each family (1.00x = as fast as the best
    configuration found by grid search). A missing time (joblib not installed) is
    marked n/a.

    Returns
    -------
    pathlib.Path : ``path``.

    Raises
    ------
    RuntimeError : matplotlib is not installed.
    ValueError : ``results`` is empty.
    """
    return _save(bench_figure(results), path)


def bench_figure(results: Sequence):
    """The :func:`plot_bench` figure (a ``matplotlib.figure.Figure``), not saved."""
    results = list(results)
    if not results:
        raise ValueError("no benchmark results to plot")
    new_figure = _figure_factory()
    n_series = len(_BENCH_SERIES)
    width = 0.8 / n_series
    fig = new_figure(figsize=(max(7.0, 1.6 * len(results) + 2.0), 4.8))
    ax = fig.add_subplot()
    values = [v for r in results for key, _, _ in _BENCH_SERIES if (v := _seconds(r, key))]
    floor = min(values) / 3 if values else 1e-3
    for i, (key, label, colour) in enumerate(_BENCH_SERIES):
        xs, heights = [], []
        for j, r in enumerate(results):
            x = j + (i - (n_series - 1) / 2) * width
            if value := _seconds(r, key):
                xs.append(x)
                heights.append(value)
            else:   # not installed, or not measured: say so where the bar would be
                ax.text(x, 0.02, "n/a", transform=ax.get_xaxis_transform(), ha="center",
                        va="bottom", fontsize=8, color=colour, rotation=90)
        ax.bar(xs, heights, width=width, label=label, color=colour, edgecolor="white",
               linewidth=0.5)
    ax.set_yscale("log")
    top = max(values) if values else 1.0
    ax.set_ylim(floor, top * 4)   # room for the ratio labels above the bars
    _seconds_axis(ax.yaxis, floor, top * 4)
    for j, r in enumerate(results):
        ratio = r.ours / r.oracle if r.oracle > 0 else math.inf
        tallest = max((v for key, _, _ in _BENCH_SERIES if (v := _seconds(r, key))),
                      default=floor)
        ax.annotate(f"{ratio:.2f}x", (j, tallest), xytext=(0, 4), textcoords="offset points",
                    ha="center", va="bottom", fontsize=9, fontweight="bold",
                    color="#B22222" if ratio > _SLOW_RATIO else "black")
    ax.set_xlim(-0.55, len(results) - 0.45)
    ax.set_xticks(range(len(results)))
    ax.set_xticklabels([f"{r.name}\n{r.n_items:,} items" for r in results], fontsize=9)
    ax.set_xlabel("workload family (label above the bars: ours / oracle seconds)")
    ax.set_ylabel("wall time (log scale)")
    ax.set_title("amorsize_dask.map vs the oracle and the defaults")
    ax.grid(axis="y", which="major", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="upper left", ncols=2, frameon=False)
    return fig


def _seconds(result, key: str) -> float | None:
    """``result.<key>`` if it is a measured time (finite, > 0), else None."""
    value = getattr(result, key, None)
    if value is None or not (0 < value < math.inf):
        return None
    return float(value)


def prediction_pairs(records: Iterable[dict]) -> list[tuple[float, float, str]]:
    """``(measured, predicted, source)`` seconds of the records that carry a prediction.

    >>> prediction_pairs([{"wall_seconds": 2.0, "predicted_seconds": 1.0,
    ...                    "plan": {"source": "model"}},
    ...                   {"wall_seconds": 1.0, "predicted_seconds": None, "plan": {}}])
    [(2.0, 1.0, 'model')]
    """
    pairs = []
    for rec in records:
        predicted, measured = rec.get("predicted_seconds"), rec.get("wall_seconds")
        if predicted is None or measured is None or measured <= 0 or predicted <= 0:
            continue
        pairs.append((float(measured), float(predicted), str(rec.get("plan", {}).get("source", "?"))))
    return pairs


def plot_predictions(records: Iterable[dict], path) -> pathlib.Path:
    """Predicted vs measured seconds of recorded runs, log-log, one colour per plan source.

    Points on the diagonal were predicted exactly; the dashed lines mark a factor of 2.

    Parameters
    ----------
    records : iterable of dict
        Training records (e.g. :meth:`amorsize_dask.TrainingStore.records`); those
        without ``predicted_seconds`` are left out.
    path : str or os.PathLike
        The PNG to write.

    Returns
    -------
    pathlib.Path : ``path``.

    Raises
    ------
    RuntimeError : matplotlib is not installed.
    ValueError : no record has a prediction.
    """
    return _save(predictions_figure(records), path)


def predictions_figure(records: Iterable[dict]):
    """The :func:`plot_predictions` figure (a ``matplotlib.figure.Figure``), not saved."""
    pairs = prediction_pairs(records)
    if not pairs:
        raise ValueError("no records with predicted_seconds to plot: the training directory "
                         "holds no runs whose time was predicted")
    new_figure = _figure_factory()
    fig = new_figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot()
    sources = sorted({s for _, _, s in pairs}, key=lambda s: (s not in _SOURCE_COLOURS, s))
    for source in sources:
        xs = [m for m, _, s in pairs if s == source]
        ys = [p for _, p, s in pairs if s == source]
        errors = [abs(p - m) / m for m, p in zip(xs, ys)]
        ax.scatter(xs, ys, s=22, alpha=0.75, color=_SOURCE_COLOURS.get(source),
                   edgecolors="none",
                   label=f"{source} ({len(xs)} run{'s' if len(xs) > 1 else ''}, "
                         f"median error {statistics.median(errors):.0%})")
    lo = min(min(m, p) for m, p, _ in pairs) / 2
    hi = max(max(m, p) for m, p, _ in pairs) * 2
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, label="predicted = measured")
    for factor in (0.5, 2.0):
        ax.plot([lo, hi], [lo * factor, hi * factor], color="grey", linewidth=0.8,
                linestyle="--", label="factor of 2" if factor == 2.0 else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    _seconds_axis(ax.xaxis, lo, hi)
    _seconds_axis(ax.yaxis, lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("measured wall time of the run (log scale)")
    ax.set_ylabel("predicted wall time (log scale)")
    ax.set_title(f"Predicted vs measured time of {len(pairs)} recorded runs")
    ax.grid(which="major", alpha=0.3)
    ax.legend(title="plan source", fontsize=8, title_fontsize=8, loc="upper left")
    return fig
