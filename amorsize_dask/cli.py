"""The ``amorsize-dask`` command (also ``python -m amorsize_dask``).

Subcommands: ``demo``, ``plan``, ``stats``, ``prune`` and ``bench``; ``--help`` on
each says what it does and what every option means.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
import sys
import time

import click

from . import __version__, config, report
from .planning.plan import format_bytes
from .validation import ENGINE_CHOICES
from .bench.command import BENCH_FAMILIES, families_of, run_suite  # noqa: F401 (BENCH_FAMILIES: cli's API)

__all__ = ["main", "demo", "plan", "stats", "prune", "bench", "load_function"]

# Shown by ``bench --help``; tests/test_cli.py checks it against bench.workloads.suite().

_DIR_HELP = ("Training directory (default: dask config amorsize.training-dir, "
             "env DASK_AMORSIZE__TRAINING_DIR, else ~/.cache/amorsize_dask/training).")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="amorsize-dask",
                      help="Show the version and exit.")
def main():
    """Fast map(func, items) on a Dask cluster or on this machine, tuned from measured runs.

    amorsize_dask.map(func, items) chooses serial, threads, processes or Dask tasks,
    the number of workers and the items per task, from a short sample the first time
    and from the runs recorded in its training directory afterwards. This command
    shows what it would do and what it has learned.

    \b
    Examples:
      amorsize-dask demo
      amorsize-dask plan mypackage.mymodule:work --items 2000
      amorsize-dask stats --plot predictions.png
      amorsize-dask prune --keep 50
      amorsize-dask bench --quick --plot bench.png cpu-1ms tiny
    """


def _dir_option(func):
    return click.option(
        "--dir", "directory", default=None, metavar="PATH", help=_DIR_HELP,
        type=click.Path(file_okay=False, path_type=pathlib.Path),
    )(func)


def _plot_option(what: str):
    return click.option(
        "--plot", "plot_path", default=None, metavar="OUT.png",
        type=click.Path(dir_okay=False, writable=True, path_type=pathlib.Path),
        help=f"Also write {what} to this PNG file (needs matplotlib: "
             "pip install 'amorsize-dask[plot]').",
    )


@main.command(short_help="Map a ~1 ms-per-item workload here and on a LocalCluster; explain and time.")
@click.option("--items", "n_items", default=2000, show_default=True, type=click.IntRange(1),
              metavar="N", help="Items to map (a range of N integers).")
@click.option("--no-cluster", is_flag=True, help="Skip the LocalCluster part (this machine only).")
def demo(n_items, no_cluster):
    """Map a real workload (~1 ms of pure Python per item): plan, explain, time.

    Twice on this machine, then twice on an in-process LocalCluster (2 worker processes
    x 1 thread, started by the demo). Each first run samples the first items and plans
    with the cost model; each second run is planned from the first one's measurements.
    Every run prints its time against a serial loop and the plan's reasons, and is
    recorded in the training directory (default: the user's cache dir).
    """
    from .bench.workloads import cpu_1ms
    from .mapping import run_map

    items = list(range(n_items))
    t0 = time.perf_counter()
    expected = [cpu_1ms(x) for x in items]
    serial = time.perf_counter() - t0
    click.echo(f"serial: {serial:.3f} s for {n_items} items; training directory: {config.default_training_dir()}")

    def runs(where: str, client=None):
        for attempt in (1, 2):
            outcome = run_map(cpu_1ms, items, client=client)
            if outcome.results != expected:
                raise click.ClickException("results differ from the serial run")
            click.echo(f"\n{where}, run {attempt}: {outcome.wall_seconds:.3f} s "
                       f"({serial / outcome.wall_seconds:.2f}x serial)")
            click.echo(outcome.plan.explain())

    runs("this machine")
    if no_cluster:
        return
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        runs("LocalCluster (2 workers x 1 thread)", client)


@main.command(short_help="Explain how map would run MODULE:FUNC over range(N).")
@click.argument("target", metavar="MODULE:FUNC")
@click.option("--items", "n_items", required=True, type=click.IntRange(1), metavar="N",
              help="Plan a map over range(N) (N >= 1).")
@click.option("--engine", default="auto", show_default=True,
              type=click.Choice(ENGINE_CHOICES),
              help="Let amorsize choose (auto) or fix the engine and plan only its workers "
                   "and chunk size.")
@click.option("--scheduler", "address", default=None, metavar="ADDRESS",
              help="Plan for the Dask cluster of this scheduler (e.g. tcp://host:8786), "
                   "not for this machine.")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS", help="How long to wait for the scheduler to answer.")
@_dir_option
def plan(target, n_items, engine, address, timeout, directory):
    """Explain how amorsize_dask.map would run FUNC over range(N), and why.

    MODULE:FUNC names a function of a module in the current directory or of an
    installed package, e.g. mymodule:work, mypackage.jobs:work or math:sqrt. Unless
    the training directory predicts it confidently, the first items are timed (the
    function is called on them: on the cluster's workers with --scheduler). Nothing is
    recorded.
    """
    from .mapping import plan as make_plan

    func = load_function(target)
    with _client_of(address, timeout) as client:
        try:
            planned = make_plan(func, range(n_items), engine=engine, training_dir=directory, client=client)
        except Exception as exc:
            raise click.ClickException(f"planning {target} failed: {type(exc).__name__}: {exc}") from exc
    click.echo(planned.explain())


@contextlib.contextmanager
def _client_of(address: str | None, timeout: float):
    """A ``Client`` of the scheduler at ``address`` for the block (None: no cluster)."""
    if address is None:
        yield None
        return
    from distributed import Client

    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:
        raise click.ClickException(
            f"cannot reach the scheduler at {address} ({type(exc).__name__}: {exc}); "
            "check the address, or leave out --scheduler to plan for this machine") from exc
    with client:
        yield client


@main.command(short_help="Records, skipped lines and prediction accuracy of the training dir.")
@_dir_option
@_plot_option("a log-log scatter of predicted vs measured seconds, coloured by plan source,")
def stats(directory, plot_path):
    """What the training directory holds, and how well its runs were predicted.

    Prints the records per machine fingerprint and per workload (function), the lines
    and files that were skipped as unreadable (torn, corrupt, too long, newer schema,
    ...), and, for the runs whose time was predicted, the median and 90th percentile of
    |predicted - measured| / measured per plan source (model, sample, explore, ...).
    """
    from .learning.store import TrainingStore

    directory = _existing_dir(directory, "run amorsize_dask.map first")
    if plot_path is not None:
        _check_plottable(plot_path)
    store = TrainingStore(directory)
    info = store.stats()
    records = store.records()
    click.echo(f"training directory: {info.path}")
    click.echo(f"records: {info.n_records} in {info.n_segments} segment file(s), "
               f"{format_bytes(info.n_bytes)}")
    skipped = {reason: n for reason, n in info.skipped.items() if n}
    click.echo("skipped: " + (", ".join(f"{n} {reason}" for reason, n in skipped.items())
                              if skipped else "none"))
    if not records:
        click.echo("no records yet: every amorsize_dask.map call with learn=True adds one")
    else:
        click.echo("")
        click.echo(report.fingerprint_table(records))
        click.echo("")
        click.echo(report.workload_table(records))
        click.echo("")
        click.echo(report.accuracy_table(records))
    if plot_path is not None:
        from .plot import plot_predictions

        written = _plot(plot_predictions, records, plot_path)
        click.echo(f"\nwrote {written}")


@main.command(short_help="Keep only the newest records per workload and machine.")
@_dir_option
@click.option("--keep", type=click.IntRange(1), default=None, metavar="N",
              help="Records to keep per machine fingerprint and workload, newest first "
                   "(N >= 1; default: dask config amorsize.store.keep-per-workload).")
def prune(directory, keep):
    """Drop all but the newest records of each workload on each machine shape.

    Segment files are compacted by atomic rename, so processes writing to the
    directory meanwhile lose nothing; segments another process wrote to in the last
    10 minutes are left as they are until a later prune. To forget everything,
    delete the directory.
    """
    from .learning.store import TrainingStore
    from .settings import checked_settings

    directory = _existing_dir(directory, "nothing to prune")
    if keep is None:
        try:  # checked as every call checks it (a bare int() error before; 2.7 read as 2)
            keep = checked_settings().keep_per_workload
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    store = TrainingStore(directory)
    try:
        removed = store.prune(keep_per_workload=keep)
    except OSError as exc:
        raise click.ClickException(f"cannot prune {directory}: {exc}; nothing was removed") from exc
    info = store.stats()
    click.echo(f"removed {removed} record(s); {info.n_records} remain in {directory} "
               f"(at most {keep} per fingerprint and workload)")
    over = sum(n - keep for n in info.per_workload.values() if n > keep)
    if over:
        click.echo(f"{over} more record(s) are in segments written to in the last "
                   f"{TrainingStore.settle_seconds / 60:.0f} minutes by another process; "
                   "a later prune will drop them")


@main.command(short_help="Ours vs the oracle, Pool.map and joblib, per workload family.")
@click.option("--quick", is_flag=True,
              help="A quarter of the items and one timing per configuration (faster, noisier).")
@click.option("--learning", "suite_name", flag_value="learning",
              help="Learning curves: 8 runs per family on a fresh training directory, then 3x the items "
                   "(3 repetitions, the median of each run).")
@click.option("--overhead", "suite_name", flag_value="overhead",
              help="Planning overhead: cold (sampling) vs warm (model), with 10k and 100k records.")
@click.option("--cluster", "suite_name", flag_value="cluster",
              help="On a LocalCluster (2 workers x 1 thread): ours vs Client.map, dask.bag defaults and the "
                   "oracle over npartitions; plugin throughput on 20,000 no-op tasks.")
@click.option("--fresh", "suite_name", flag_value="fresh",
              help="First call in a fresh interpreter per tool (serial, Pool, joblib, ours with and without "
                   "the main guard) and our warm third call, over the warm oracle, on 15 families.")
@click.option("--stream", "suite_name", flag_value="stream",
              help="imap over 3,000,000 text lines and 20,000 x 1 ms items vs Pool.imap and serial map: "
                   "time and peak memory of the process tree, each tool in a fresh interpreter.")
@click.option("--faults", "suite_name", flag_value="faults",
              help="Inject faults (dead workers, bad input, corrupt and hostile store content) and count "
                   "what survived and what was lost.")
@click.option("--store", "store_records", type=click.IntRange(min=1), default=None, metavar="N",
              help="The training directory with N records: first load, refresh after foreign appends, "
                   "memory per record, prune (a few seconds for N=10000, minutes for 1,000,000).")
@click.option("--against", "against_rev", default=None, metavar="REV",
              help="With --fresh: our first call at commit REV beside this checkout's, N fresh interpreters "
                   "each, interleaved (medians in ms and their ratio; families: all unless named).")
@click.option("--runs", type=click.IntRange(min=1), default=7, show_default=True, metavar="N",
              help="Rounds per family for --against.")
@_plot_option("grouped bars per family (ours, oracle, Pool.map, joblib; log seconds)")
@click.argument("families", nargs=-1, metavar="[FAMILY]...")
def bench(quick, suite_name, store_records, against_rev, runs, plot_path, families):
    """Benchmark: ours (cold) vs the oracle grid search vs Pool.map and joblib defaults.

    For each workload family, times amorsize_dask.map with no training data (sampling
    and planning included), the fastest of a grid of serial / process-pool /
    thread-pool configurations (the oracle), multiprocessing Pool().map and
    joblib.Parallel(n_jobs=-1), then prints a table with the ratio ours / oracle.
    Uses every core for a long time: do not run it next to other measurements.

    FAMILY: tiny, cpu-1ms, heavy, skewed, payload, io-wait, numpy-nogil (default: all);
    with --learning also drift (the cost per item changes after the first run).
    """
    if store_records is not None:
        if suite_name or families or plot_path is not None:
            raise click.BadParameter("--store N runs alone (no suite, family or --plot)", param_hint="--store")
        from .bench.store import store_figures

        store_figures(store_records, out=click.echo)
        return
    known = families_of(suite_name)
    unknown = [f for f in families if f not in known]
    if unknown:
        raise click.BadParameter(f"unknown famil{'ies' if len(unknown) > 1 else 'y'} "
                                 f"{', '.join(map(repr, unknown))}; choose from "
                                 f"{', '.join(known)}", param_hint="FAMILY")
    if against_rev is not None:
        if suite_name != "fresh" or quick or plot_path is not None:
            raise click.BadParameter("--against REV goes with --fresh alone (no --quick, --plot)",
                                     param_hint="--against")
        from .bench.against import run as run_against

        try:
            run_against(against_rev, families=list(families) or list(known), runs=runs, out=click.echo)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--against") from exc
        return
    if plot_path is not None:
        if suite_name:
            raise click.BadParameter("--plot draws the default suite only", param_hint="--plot")
        _check_plottable(plot_path)   # fail now, not after the run
    results = run_suite(suite_name, quick=quick, families=list(families) or None, out=click.echo)
    if plot_path is not None:
        from .plot import plot_bench

        click.echo(f"wrote {_plot(plot_bench, results, plot_path)}")


# -- helpers ---------------------------------------------------------------------------

def load_function(target: str):
    """``"package.module:func"`` -> the function, with a clear error when it is not there.

    Modules are found in the current directory first, as ``python -m`` would.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"{target!r} is not MODULE:FUNC, e.g. math:sqrt", param_hint="MODULE:FUNC")
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}", param_hint="MODULE:FUNC") from None
    func = module
    for part in attr.split("."):
        func = getattr(func, part, None)
        if func is None:
            raise click.BadParameter(f"{module_name!r} has no {attr!r}", param_hint="MODULE:FUNC")
    if not callable(func):
        raise click.BadParameter(f"{target!r} is not callable", param_hint="MODULE:FUNC")
    return func


def _existing_dir(directory: pathlib.Path | None, what_to_do: str) -> pathlib.Path:
    if directory is None:
        from .config import default_training_dir

        directory = default_training_dir()
    if not directory.exists():
        raise click.ClickException(f"no training directory at {directory} yet: {what_to_do}")
    if not directory.is_dir():
        raise click.ClickException(f"{directory} is not a directory: pass --dir PATH of a "
                                   "training directory")
    return directory


def _check_plottable(path: pathlib.Path) -> None:
    from .plot import require_matplotlib

    try:
        require_matplotlib()
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    parent = path.parent
    if not parent.is_dir():
        raise click.BadParameter(f"directory {parent} does not exist", param_hint="'--plot'")
    existed = path.exists()
    try:  # before any table is printed: the plot comes last
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise click.BadParameter(f"cannot write {path}: {exc.strerror or exc}", param_hint="'--plot'") from None
    if not existed:
        path.unlink()


def _plot(plot_func, data, path: pathlib.Path) -> pathlib.Path:
    try:
        return plot_func(data, path)
    except (RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None


if __name__ == "__main__":
    sys.exit(main())
