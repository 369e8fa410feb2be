"""The ``amorsize-dask`` command (also ``python -m amorsize_dask``)."""

from __future__ import annotations

import importlib
import sys
import time

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="amorsize-dask")
def main():
    """Fast map(func, items) on a Dask cluster or on this machine, tuned from measured runs."""


@main.command()
@click.option("--items", "n_items", default=2000, show_default=True, type=click.IntRange(1), help="Items to map.")
def demo(n_items):
    """Map a real workload (~1 ms of pure Python per item) twice: plan, explain, time."""
    from .bench.workloads import cpu_1ms
    from .mapping import run_map

    items = list(range(n_items))
    t0 = time.perf_counter()
    expected = [cpu_1ms(x) for x in items]
    serial = time.perf_counter() - t0
    click.echo(f"serial: {serial:.3f} s for {n_items} items")
    for attempt in (1, 2):
        outcome = run_map(cpu_1ms, items)
        if outcome.results != expected:
            raise click.ClickException("results differ from the serial run")
        click.echo(f"\nrun {attempt}: {outcome.wall_seconds:.3f} s ({serial / outcome.wall_seconds:.2f}x serial)")
        click.echo(outcome.plan.explain())


@main.command()
@click.argument("target", metavar="MODULE:FUNC")
@click.option("--items", "n_items", required=True, type=click.IntRange(1), help="Map over range(N).")
@click.option("--engine", default="auto", show_default=True,
              type=click.Choice(["auto", "serial", "threads", "processes", "dask"]))
def plan(target, n_items, engine):
    """Print the plan for FUNC (from MODULE) over range(ITEMS); the first items are timed."""
    from .mapping import plan as make_plan

    click.echo(make_plan(load_function(target), range(n_items), engine=engine).explain())


@main.command()
@click.option("--quick", is_flag=True, help="A quarter of the items and one repetition.")
@click.argument("families", nargs=-1)
def bench(quick, families):
    """Benchmark: ours (cold) vs the oracle grid search vs Pool.map and joblib defaults."""
    from .bench.local import run

    run(quick=quick, families=list(families) or None, out=click.echo)


def load_function(target: str):
    """``"package.module:func"`` -> the function, with a clear error when it is not there."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"{target!r} is not MODULE:FUNC, e.g. math:sqrt", param_hint="MODULE:FUNC")
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


if __name__ == "__main__":
    sys.exit(main())
