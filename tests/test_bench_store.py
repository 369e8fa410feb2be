"""bench --store: the figures are measured on a real directory, and pruning bounds it."""

from click.testing import CliRunner

from amorsize_dask.bench.store import store_figures, write_directory
from amorsize_dask.cli import main
from amorsize_dask.learning.store import TrainingStore


def test_store_figures_on_a_small_directory():
    lines = []
    figures = store_figures(300, out=lines.append)
    before, after = figures["auto-prune: bytes before, after"]
    assert after <= before // 2 + 2000  # the writer pruned the directory to half its budget
    assert 0 < figures["memory B/record"] < 2000 and figures["first load s"] > 0
    assert "first load s" in "\n".join(lines)


def test_synthetic_directory_holds_valid_records(tmp_path):
    write_directory(tmp_path, 40)
    store = TrainingStore(tmp_path)
    assert len(store.records()) == 40 and sum(store.stats().skipped.values()) == 0


def test_cli_store_option_is_validated():
    result = CliRunner().invoke(main, ["bench", "--store", "0"])
    assert result.exit_code != 0 and "--store" in result.output
    result = CliRunner().invoke(main, ["bench", "--store", "10", "--learning"])
    assert result.exit_code != 0 and "runs alone" in result.output


def test_synthetic_records_are_what_validation_returns():
    import random

    from amorsize_dask.bench.store import synthetic_record
    from amorsize_dask.learning.records import validate_record

    rng = random.Random(3)
    for i in range(60):
        record = synthetic_record(i, rng)
        assert validate_record(record) == record          # built directly, but exactly as validated


def test_synthetic_directory_as_sealing_writers_leave_it(tmp_path):
    write_directory(tmp_path, 400, seal_bytes=30_000)
    store = TrainingStore(tmp_path)
    assert len(store.records()) == 400 and sum(store.stats().skipped.values()) == 0
    assert list((tmp_path / "segments").glob("*.sealed.jsonl"))
