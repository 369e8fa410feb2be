"""An item that kills its worker process is named, on ``map`` and ``imap``.

When a worker dies, every chunk the pool had handed out fails with it: the chunk that was
running beside the culprit, and those queued behind them. The error named one of those
(``items 40..49`` for item 55, ``180..189`` for item 195) and ``imap`` raised at the first
crash, naming the chunk it was waiting for. Now the suspects run again one at a time, so
a death is theirs, and a chunk that kills its worker again is split down to the item.
A worker killed now and then (the OOM killer, a node going away) costs no result.
"""

import pytest

from .test_user_scripts import run_script

HEAD = """
import json, os, sys, time
import amorsize_dask as ad
from amorsize_dask.errors import WorkerLostError

CULPRIT = int(sys.argv[2])
DEATHS = sys.argv[3] if len(sys.argv) > 3 else None  # a file counting them, up to argv[4]

def dies_at(x):
    time.sleep(0.01)
    if x == CULPRIT:
        if DEATHS is None:
            os._exit(3)
        with open(DEATHS, "a+") as f:
            f.seek(0)
            if len(f.read()) < int(sys.argv[4]):
                f.write("x")
                f.flush()
                os._exit(3)
    return x * 10
"""

MAIN = """
out = {"results": []}
try:
    if sys.argv[1] == "map":
        out["results"] = ad.map(dies_at, range(200), engine="processes", n_workers=2, chunksize=10)
    else:
        for r in ad.imap(dies_at, range(200), engine="processes", n_workers=2, chunksize=10):
            out["results"].append(r)
except WorkerLostError as exc:
    out["error"] = str(exc)
print(json.dumps(out))
"""


@pytest.mark.parametrize("call", ["map", "imap"])
@pytest.mark.parametrize("culprit", [5, 55, 195])
def test_the_item_that_kills_its_worker_is_named(tmp_path, call, culprit):
    out, _ = run_script(tmp_path, HEAD, MAIN, args=[call, culprit])
    assert f"item {culprit} of" in out.get("error", ""), out
    if call == "imap":  # what builtins.map yields before the item that ends the script
        assert out["results"] == [x * 10 for x in range(culprit)], out["results"]


@pytest.mark.parametrize("call", ["map", "imap"])
@pytest.mark.parametrize("deaths", [1, 3], ids=["once", "until-halved"])
def test_a_worker_killed_a_few_times_loses_no_result(tmp_path, call, deaths):
    """Killed once (the OOM killer): the chunks run again. Three times: the chunk is
    halved, and both halves finish: their results are all there, in order."""
    out, _ = run_script(tmp_path, HEAD, MAIN, args=[call, 55, tmp_path / "deaths", deaths])
    assert "error" not in out, out
    assert out["results"] == [x * 10 for x in range(200)]
    assert (tmp_path / "deaths").read_text() == "x" * deaths
