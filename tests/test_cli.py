"""The ``amorsize-dask`` command, on real training directories written by real ``map`` calls."""

import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import amorsize_dask
from amorsize_dask import cli, report
from amorsize_dask.plot import PNG_SIGNATURE
from amorsize_dask.learning.records import make_record
from amorsize_dask.learning.store import SEGMENTS, TrainingStore
from tests.helpers.funcs import spin, square

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_cli(*args, **kwargs):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False, **kwargs)


def console_script() -> list[str]:
    """The installed ``amorsize-dask`` of this interpreter's environment, else ``-m``."""
    beside = pathlib.Path(sys.executable).with_name("amorsize-dask")
    found = str(beside) if beside.exists() else shutil.which("amorsize-dask")
    return [found] if found else [sys.executable, "-m", "amorsize_dask"]


def subprocess_cli(*args, cmd=None):
    return subprocess.run((cmd or console_script()) + [str(a) for a in args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def age_segments(directory: pathlib.Path, seconds: float = 3600) -> None:
    """Make every segment look written ``seconds`` ago (as after an earlier session)."""
    past = time.time() - seconds
    for seg in (directory / SEGMENTS).iterdir():
        os.utime(seg, (past, past))


@pytest.fixture(scope="module")
def training_dir(tmp_path_factory):
    """A training directory with 3 runs of ``square`` and 2 of ``spin`` (20,000 items: a few
    thousand of ``square`` may all be computed while sampling, and such a run predicts nothing)."""
    path = tmp_path_factory.mktemp("training")
    for func in (square, square, square, spin, spin):
        assert amorsize_dask.map(func, range(20000), training_dir=path) == [func(x) for x in range(20000)]
    return path


def fresh_training_dir(path: pathlib.Path, runs: int = 4) -> pathlib.Path:
    for _ in range(runs):
        amorsize_dask.map(square, range(200), training_dir=path)
    return path


# -- help and version -------------------------------------------------------------------

def test_help_and_version_from_the_installed_script():
    out = subprocess_cli("--help")
    assert out.returncode == 0, out.stderr
    for command in ("demo", "plan", "stats", "prune", "bench"):
        assert re.search(rf"^\s+{command}\s+\S", out.stdout, re.M), command
    version = subprocess_cli("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"amorsize-dask, version {amorsize_dask.__version__}"


def test_python_dash_m():
    out = subprocess_cli("--help", cmd=[sys.executable, "-m", "amorsize_dask"])
    assert out.returncode == 0, out.stderr
    assert "stats" in out.stdout and "prune" in out.stdout


@pytest.mark.parametrize("command", ["demo", "plan", "stats", "prune", "bench"])
def test_every_command_and_option_has_help(command):
    result = run_cli(command, "--help")
    assert result.exit_code == 0
    cmd = cli.main.commands[command]
    assert cmd.help and len(cmd.help.split()) > 8
    for param in cmd.params:
        if param.param_type_name == "option":
            assert param.help, f"{command} {param.opts} has no help"
            assert param.opts[0] in result.output


def test_bench_help_lists_every_family():
    from amorsize_dask.bench.workloads import suite

    names = tuple(w.name for w in suite())
    assert cli.BENCH_FAMILIES == names
    help_text = " ".join(run_cli("bench", "--help").output.split())
    for name in names:
        assert name in help_text


# -- stats ------------------------------------------------------------------------------

def test_stats_names_functions_and_counts(training_dir):
    result = run_cli("stats", "--dir", training_dir)
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"training directory: {training_dir}" in out
    assert "records: 5 in 1 segment file(s)" in out
    assert "skipped: none" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith("tests.helpers.funcs.")}
    assert rows["tests.helpers.funcs.square"][3] == "3"
    assert rows["tests.helpers.funcs.spin"][3] == "2"
    fingerprints = {r["fingerprint"] for r in TrainingStore(training_dir).records()}
    (fp,) = fingerprints
    assert re.search(rf"^{fp}\s+5\s+local, \d+ cores", out, re.M)
    assert "prediction error |predicted - measured| / measured" in out
    assert re.search(r"^sample\s+\d+\s+\d+%\s+\d+%$", out, re.M)


def test_stats_accuracy_matches_the_records(training_dir):
    import numpy as np

    records = TrainingStore(training_dir).records()
    errors = [abs(r["predicted_seconds"] - r["wall_seconds"]) / r["wall_seconds"]
              for r in records if r["predicted_seconds"]  # 0: every item computed while sampling
              and r["plan"]["source"] == "sample"]
    n, median, p90 = report.prediction_accuracy(records)["sample"]
    assert n == len(errors)
    assert median == pytest.approx(float(np.median(errors)))
    assert p90 == pytest.approx(float(np.percentile(errors, 90)))


def test_stats_counts_skipped_lines(tmp_path):
    fresh_training_dir(tmp_path, runs=2)
    (tmp_path / SEGMENTS / "other-1-abcd.jsonl").write_bytes(
        b"this is not json\n" + b'{"schema": 99}\n' + b'{"torn": ')
    result = run_cli("stats", "--dir", tmp_path)
    assert result.exit_code == 0, result.output
    skipped = next(line for line in result.output.splitlines() if line.startswith("skipped:"))
    assert "1 not-json" in skipped and "1 future-schema" in skipped and "1 torn" in skipped
    assert "records: 2 in 2 segment file(s)" in result.output


def test_stats_default_dir_comes_from_config(training_dir):
    import dask

    with dask.config.set({"amorsize.training-dir": str(training_dir)}):
        result = run_cli("stats")
    assert result.exit_code == 0
    assert f"training directory: {training_dir}" in result.output


def test_stats_plot_writes_a_png(training_dir, tmp_path):
    matplotlib_image = pytest.importorskip("matplotlib.image")
    out = tmp_path / "pred.png"
    result = run_cli("stats", "--dir", training_dir, "--plot", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1024
    pixels = matplotlib_image.imread(out)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300


def test_stats_of_an_empty_directory(tmp_path):
    result = run_cli("stats", "--dir", tmp_path)
    assert result.exit_code == 0
    assert "records: 0" in result.output and "no records yet" in result.output


def test_stats_plot_without_predictions_is_a_clear_error(tmp_path):
    store = TrainingStore(tmp_path / "t")
    store.append(make_record(fingerprint="0" * 16, fingerprint_fields={}, workload="1" * 16,
                             function="mymodule.work", features={"n_items": 10},
                             engine="serial", n_workers=1, chunksize=10, source="default",
                             wall_seconds=0.1, compute_seconds=0.1))
    result = run_cli("stats", "--dir", tmp_path / "t", "--plot", tmp_path / "p.png")
    assert result.exit_code == 1
    assert "no records with predicted_seconds" in result.output
    assert "mymodule.work" in result.output       # the text report still came first
    assert not (tmp_path / "p.png").exists()


def test_stats_plot_to_a_path_that_cannot_be_written_fails_before_the_tables(training_dir, tmp_path):
    pytest.importorskip("matplotlib")
    result = run_cli("stats", "--dir", training_dir, "--plot", "/proc/amorsize-plot.png")  # no file goes there
    assert result.exit_code == 2
    assert "cannot write" in result.output and "records:" not in result.output


def test_stats_plot_without_matplotlib(training_dir, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = run_cli("stats", "--dir", training_dir, "--plot", tmp_path / "p.png")
    assert result.exit_code == 1
    assert "plotting needs matplotlib: pip install 'amorsize-dask[plot]'" in result.output


# -- prune ------------------------------------------------------------------------------

def test_prune_keep_one_removes_and_reports(tmp_path):
    fresh_training_dir(tmp_path, runs=4)
    age_segments(tmp_path)                      # written an hour ago: settled
    result = run_cli("prune", "--dir", tmp_path, "--keep", 1)
    assert result.exit_code == 0, result.output
    assert f"removed 3 record(s); 1 remain in {tmp_path}" in result.output
    assert len(TrainingStore(tmp_path).records()) == 1
    again = run_cli("prune", "--dir", tmp_path, "--keep", 1)
    assert "removed 0 record(s); 1 remain" in again.output


def test_prune_leaves_recent_segments_of_other_processes_and_says_so(tmp_path):
    subprocess.run([sys.executable, "-c",
                    "import dask, amorsize_dask as ad; from tests.helpers.funcs import square\n"  # planned, recorded
                    f"for _ in range(3): ad.map(square, range(50), training_dir={str(tmp_path)!r})"],
                   cwd=ROOT, check=True, timeout=120)
    result = run_cli("prune", "--dir", tmp_path, "--keep", 1)
    assert result.exit_code == 0, result.output
    assert "removed 0 record(s); 3 remain" in result.output
    assert "2 more record(s) are in segments written to in the last 10 minutes" in result.output


def test_prune_default_keep_comes_from_config(tmp_path):
    import dask

    fresh_training_dir(tmp_path, runs=3)
    age_segments(tmp_path)
    with dask.config.set({"amorsize.store.keep-per-workload": 2}):
        result = run_cli("prune", "--dir", tmp_path)
    assert "removed 1 record(s); 2 remain" in result.output
    assert "at most 2 per fingerprint and workload" in result.output


# -- plan -------------------------------------------------------------------------------

def test_plan_prints_an_explanation(tmp_path):
    result = run_cli("plan", "tests.helpers.funcs:square", "--items", 100, "--dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert re.search(r"engine=\w+\s+workers=\d+\s+chunksize=\d+", result.output)
    assert "items=100" in result.output
    assert not (tmp_path / SEGMENTS).exists()   # planning records nothing


def test_plan_finds_modules_in_the_current_directory(tmp_path):
    (tmp_path / "my_cli_workload.py").write_text("def work(x):\n    return x + 1\n")
    out = subprocess.run(console_script() + ["plan", "my_cli_workload:work", "--items", "20",
                                             "--dir", str(tmp_path / "t")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "items=20" in out.stdout


def test_plan_against_a_running_scheduler(tmp_path):
    """``--scheduler ADDRESS``: how map would run on that cluster (the function is timed on
    its workers, as map samples there), not on this machine."""
    from tests.helpers.cluster import local_cluster

    with local_cluster() as cluster:
        out = subprocess_cli("plan", "tests.helpers.funcs:square", "--items", 200, "--dir", tmp_path,
                             "--scheduler", cluster.scheduler_address)
    assert out.returncode == 0, out.stderr
    assert re.search(r"engine=dask\s+workers=\d+", out.stdout), out.stdout
    assert "cluster" in out.stdout
    assert not (tmp_path / SEGMENTS).exists()   # planning records nothing


def test_plan_against_a_scheduler_that_does_not_answer(tmp_path):
    result = run_cli("plan", "math:sqrt", "--items", 5, "--dir", tmp_path, "--scheduler", "tcp://127.0.0.1:9",
                     "--timeout", 1)
    assert result.exit_code == 1, result.output
    assert "cannot reach the scheduler at tcp://127.0.0.1:9" in " ".join(result.output.split())


# -- bad arguments: non-zero exit, a message naming the problem ----------------------------

@pytest.mark.parametrize("args, code, message", [
    (["plan", "nocolon", "--items", "5"], 2, "'nocolon' is not MODULE:FUNC, e.g. math:sqrt"),
    (["plan", "math:nosuch", "--items", "5"], 2, "'math' has no 'nosuch'"),
    (["plan", "no_such_module_xyz:f", "--items", "5"], 2, "cannot import 'no_such_module_xyz'"),
    (["plan", "math:pi", "--items", "5"], 2, "'math:pi' is not callable"),
    (["plan", "math:sqrt", "--items", "0"], 2, "0 is not in the range x>=1"),
    (["plan", "math:sqrt"], 2, "Missing option '--items'"),
    (["prune", "--keep", "0"], 2, "0 is not in the range x>=1"),
    (["bench", "no-such-family"], 2, "unknown family 'no-such-family'; choose from tiny, cpu-1ms"),
    (["bench", "--plot", "/no/such/dir/out.png", "tiny"], 2, "directory /no/such/dir does not exist"),
    (["nosuchcommand"], 2, "No such command 'nosuchcommand'"),
    (["bench", "--against", "HEAD", "tiny"], 2, "--against REV goes with --fresh alone"),
    (["bench", "--fresh", "--against", "no-such-rev-xyz", "tiny"], 2,
     "--against 'no-such-rev-xyz': git archive failed"),
])
def test_bad_arguments(args, code, message):
    result = run_cli(*args)
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split())


def test_stats_of_a_regular_file_is_refused(tmp_path):
    regular = tmp_path / "file.txt"
    regular.write_text("hello")
    result = run_cli("stats", "--dir", regular)
    assert result.exit_code == 2
    assert f"Directory '{regular}' is a file" in result.output


@pytest.mark.parametrize("command", ["stats", "prune"])
def test_missing_directory_is_a_clear_error(tmp_path, command):
    missing = tmp_path / "nope"
    result = run_cli(command, "--dir", missing)
    assert result.exit_code == 1
    assert f"no training directory at {missing} yet" in result.output
    assert not missing.exists()                 # reading never creates it


def test_missing_directory_from_the_installed_script(tmp_path):
    out = subprocess_cli("stats", "--dir", tmp_path / "nope")
    assert out.returncode == 1
    assert out.stderr.strip() == (f"Error: no training directory at {tmp_path / 'nope'} yet: "
                                  "run amorsize_dask.map first")


def test_plan_of_a_failing_function(tmp_path):
    (tmp_path / "my_failing_workload.py").write_text(
        "def work(x):\n    raise KeyError(x)\n")
    out = subprocess.run(console_script() + ["plan", "my_failing_workload:work", "--items", "20",
                                             "--dir", str(tmp_path / "t")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "planning my_failing_workload:work failed: KeyError" in out.stderr
    assert "Traceback" not in out.stderr


def test_learning_curve_reports_the_median_of_its_repetitions():
    from amorsize_dask.bench.learning import learning_curves

    lines = []
    found = learning_curves(runs=3, quick=True, families=["tiny"], out=lines.append, seeds=2)
    curve = found["curves"]["tiny"]
    ratios, tags = curve["ratios"], curve["tags"]
    assert len(ratios) == 3 and all(0 < r < 100 for r in ratios)
    # strict divides by the least of the oracle's timings: never kinder than paired
    assert all(strict >= paired * 0.999 for strict, paired in zip(curve["strict"], ratios))
    assert tags[0] == "ss" and all(len(t) == 2 and set(t) <= set("smx") for t in tags)  # one per repetition
    per_seed = [line for line in lines if line.startswith("  tiny #")]
    assert len(per_seed) == 2
    first_runs = sorted(float(line.split("ours/oracle ")[1].split()[0][:-1]) for line in per_seed)
    assert ratios[0] == pytest.approx(sum(first_runs) / 2, rel=0.01)  # median of two: their mean
    text = "\n".join(lines)
    assert "median of 2" in text and "paired: warm" in text and "strict: warm" in text


def test_cold_benchmark_pairs_each_of_our_runs_with_the_oracle():
    from amorsize_dask.bench.local import run

    lines = []
    (row,) = run(quick=True, families=["tiny"], out=lines.append)
    assert row.name == "tiny" and row.n_items == 25_000
    assert len(row.paired_ratios) == 1 and row.ratio == row.paired_ratios[0]  # quick: one run of each
    assert row.ours > 0 and row.oracle > 0 and row.strict_ratio == pytest.approx(row.ours / row.oracle)
    text = "\n".join(lines)
    assert "ours/oracle: geometric mean" in text and "strict: geometric mean" in text


def test_oracle_times_a_thread_configuration_without_a_limit():
    from amorsize_dask.bench.local import Config, Oracle

    oracle = Oracle(2, thread_counts=(2,))
    try:
        seconds = oracle.time_config(Config("threads", 2, 5), abs, list(range(-20, 0)), math.inf)
        assert 0 < seconds < math.inf  # timed to the end, never cut
        assert oracle.time_config(Config("threads", 2, 1), time.sleep, [0.05] * 4, 0.01) == math.inf  # cut
    finally:
        oracle.close()


def test_bench_against_a_commit_times_both_sides_in_fresh_interpreters():
    """``bench --fresh --against REV``: our first call at REV (a ``git archive`` of it) and in
    this checkout, interleaved in fresh interpreters, with serial beside them."""
    result = subprocess_cli("bench", "--fresh", "--against", "HEAD", "--runs", "1", "short-cpu")
    assert result.returncode == 0, result.stderr
    # the machine's overheads cached before the first call (a script's own calibration,
    # started after its call, dies with it: every first call would plan on estimates)
    assert result.stdout.startswith("calibration (cached per machine"), result.stdout[:300]
    header = next(line for line in result.stdout.splitlines() if line.startswith("| family"))
    assert "before ms" in header and "after/before" in header
    row = next(line for line in result.stdout.splitlines() if line.startswith("| short-cpu"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "1" and all(float(c) > 0 for c in cells[2:6]), row


@pytest.mark.parametrize("value", ["abc", 2.7])
def test_prune_names_a_bad_keep_setting(tmp_path, value):
    """A bare "invalid literal for int()" before, and 2.7 cut to 2 (hunt 19); ad.map names it."""
    import dask

    fresh_training_dir(tmp_path, runs=3)
    with dask.config.set({"amorsize.store.keep-per-workload": value}):
        result = run_cli("prune", "--dir", tmp_path)
    assert result.exit_code != 0
    assert f"amorsize.store.keep-per-workload={value!r}" in result.output, result.output
