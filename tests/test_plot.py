"""PNG plots of benchmark rows and of recorded predictions (matplotlib, Agg)."""

import sys

import pytest

import amorsize_dask
from amorsize_dask import plot
from amorsize_dask.bench.local import Config, FamilyResult
from amorsize_dask.plot import PNG_SIGNATURE, plot_bench, plot_predictions, prediction_pairs
from amorsize_dask.learning.store import TrainingStore
from tests.helpers.funcs import square

matplotlib = pytest.importorskip("matplotlib")


def bench_rows():
    """Hand-built rows shaped like a real run's (no benchmark is run here)."""
    return [
        FamilyResult("tiny", 100_000, 0.012, 0.012, Config("serial", 1, 100_000), 0.015,
                     "serial", 2.1, 0.9),
        FamilyResult("cpu-1ms", 2_000, 2.2, 1.2, Config("processes", 2, 250), 1.3,
                     "processes 2x100", 1.5, 1.4),
        FamilyResult("heavy", 24, 1.9, 1.0, Config("processes", 2, 1), 1.05,
                     "processes 2x1", 1.2, None),          # joblib not installed
        FamilyResult("io-wait", 1_000, 2.1, 0.05, Config("threads", 64, 4), 0.08,
                     "threads 64x4", 1.1, 0.7),
    ]


def assert_png(path, min_width=400):
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1024
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[1] >= min_width
    assert pixels.std() > 0.01            # not a blank canvas


def texts_of(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_plot_bench_writes_a_png(tmp_path):
    out = plot_bench(bench_rows(), tmp_path / "bench.png")
    assert out == tmp_path / "bench.png"
    assert_png(out)


def test_bench_figure_annotates_ratios_and_missing_bars():
    fig = plot.bench_figure(bench_rows())
    texts = texts_of(fig)
    for row in bench_rows():
        assert f"{row.ours / row.oracle:.2f}x" in texts
    assert texts.count("n/a") == 1
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert "time" in ax.get_ylabel() and "family" in ax.get_xlabel()
    assert ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "tiny\n100,000 items"
    assert any(label.get_text() == "1 s" for label in ax.get_yticklabels())   # units on ticks
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["amorsize_dask (cold)", "oracle (best of grid)",
                      "multiprocessing Pool.map", "joblib Parallel(n_jobs=-1)"]


def test_plot_bench_of_nothing_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no benchmark results"):
        plot_bench([], tmp_path / "bench.png")
    assert not (tmp_path / "bench.png").exists()


def test_plot_predictions_of_real_records(tmp_path):
    for _ in range(3):
        amorsize_dask.map(square, range(20000), training_dir=tmp_path / "t")  # 200 are all sampled
    records = TrainingStore(tmp_path / "t").records()
    assert prediction_pairs(records)
    out = plot_predictions(records, tmp_path / "pred.png")
    assert_png(out)


def test_predictions_figure_colours_by_source_and_draws_the_diagonal():
    records = [{"wall_seconds": 1.0, "predicted_seconds": 1.2, "plan": {"source": "sample"}},
               {"wall_seconds": 2.0, "predicted_seconds": 1.0, "plan": {"source": "sample"}},
               {"wall_seconds": 0.01, "predicted_seconds": 0.01, "plan": {"source": "model"}},
               {"wall_seconds": 0.5, "predicted_seconds": None, "plan": {"source": "default"}}]
    fig = plot.predictions_figure(records)
    ax = fig.axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert "measured" in ax.get_xlabel() and "predicted" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["model (1 run, median error 0%)", "sample (2 runs, median error 35%)"]
    assert "predicted = measured" in labels
    assert "3 recorded runs" in ax.get_title()


def test_plot_predictions_without_predictions(tmp_path):
    with pytest.raises(ValueError, match="no records with predicted_seconds"):
        plot_predictions([{"wall_seconds": 1.0, "predicted_seconds": None, "plan": {}}],
                         tmp_path / "p.png")


def test_plots_leave_the_pyplot_backend_alone(tmp_path):
    before = matplotlib.get_backend()
    plot_bench(bench_rows(), tmp_path / "bench.png")
    assert matplotlib.get_backend() == before


def test_missing_matplotlib_is_a_runtime_error_with_the_remedy(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(RuntimeError, match=r"plotting needs matplotlib: pip install 'amorsize-dask\[plot\]'"):
        plot_bench(bench_rows(), tmp_path / "bench.png")
    with pytest.raises(RuntimeError, match="plotting needs matplotlib"):
        plot.require_matplotlib()
