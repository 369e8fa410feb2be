"""The progress line: drawn when asked, silent off a terminal, exact under threads."""

import io
import re
import sys
import threading

import pytest

from amorsize_dask.progress import Progress, make_progress


class FakeClock:
    """Seconds that advance only when the test says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class TTYStringIO(io.StringIO):
    def isatty(self):
        return True


def last_line(text: str) -> str:
    return text.split("\r")[-1].rstrip()


def test_output_on_a_stream_when_asked():
    out = io.StringIO()
    bar = make_progress(out, 100)
    assert isinstance(bar, Progress)
    for _ in range(10):
        bar.advance(10)
    bar.close()
    text = out.getvalue()
    assert "100/100" in text
    assert re.search(r"[\d.]+[kM]? items/s", text), text
    assert "done in" in last_line(text)
    assert text.endswith("\n") and text.count("\n") == 1


def test_rate_and_eta_from_the_clock():
    out, clock = io.StringIO(), FakeClock()
    bar = Progress(1000, out, min_interval=0, clock=clock)
    clock.now = 2.0
    bar.advance(100)                                  # 50 items/s, 900 items to go: 18 s
    assert last_line(out.getvalue()) == (
        " 100/1000 items  10% [##..................] 50 items/s  ETA 18 s")
    clock.now = 4.0
    bar.advance(900)
    clock.now = 5.0
    bar.close()
    assert last_line(out.getvalue()) == (
        "1000/1000 items 100% [####################] 200 items/s  done in 5.00 s")


def test_redraws_at_most_every_min_interval():
    out, clock = io.StringIO(), FakeClock()
    bar = Progress(1000, out, min_interval=0.5, clock=clock)
    for i in range(1000):                              # 1000 advances over 1 s
        clock.now = i / 1000
        bar.advance(1)
    draws = out.getvalue().count("\r")
    assert 2 <= draws <= 3                             # at 0 s, 0.5 s (and not more)
    bar.close()
    assert out.getvalue().count("\r") == draws + 1
    assert bar.done == 1000


def test_shorter_line_blanks_the_longer_one():
    out, clock = io.StringIO(), FakeClock()
    bar = Progress(10, out, min_interval=0, clock=clock)
    clock.now = 1.0
    bar.advance(1)                                     # has an ETA: long line
    long_line = out.getvalue().split("\r")[-1]
    clock.now = 2.0
    bar.advance(9)                                     # no ETA: shorter, padded
    assert len(out.getvalue().split("\r")[-1]) >= len(long_line)


def test_close_is_idempotent_and_later_advances_are_silent():
    out = io.StringIO()
    with Progress(3, out) as bar:
        bar.advance(3)
    text = out.getvalue()
    bar.close()
    bar.advance(1)
    assert out.getvalue() == text
    assert bar.done == 4


def test_a_broken_stream_never_fails_the_caller():
    out = io.StringIO()
    bar = Progress(10, out, min_interval=0)
    out.close()
    bar.advance(5)                                     # ValueError inside: swallowed
    bar.close()
    assert bar.done == 5


def test_true_is_silent_when_stderr_is_not_a_terminal(monkeypatch):
    fake = io.StringIO()                               # isatty() is False
    monkeypatch.setattr(sys, "stderr", fake)
    assert make_progress(True, 100) is None
    assert fake.getvalue() == ""


class OutStream(io.StringIO):
    """What ipykernel puts in sys.stderr in a notebook (no terminal: isatty() is False)."""


OutStream.__module__ = "ipykernel.iostream"


@pytest.mark.parametrize("stream", [TTYStringIO, OutStream], ids=["terminal", "notebook"])
def test_true_draws_on_stderr_when_it_is_a_terminal_or_a_notebook(monkeypatch, stream):
    """A notebook's stderr is ipykernel's OutStream, not a terminal: ``progress=True``
    showed nothing there, where a ``\r`` line redraws in place as on a terminal."""
    fake = stream()
    monkeypatch.setattr(sys, "stderr", fake)
    bar = make_progress(True, 5)
    assert bar is not None and bar.stream is fake
    bar.advance(5)
    bar.close()
    assert "5/5" in fake.getvalue()


def test_true_with_no_stderr_at_all(monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)           # pythonw, some daemons
    assert make_progress(True, 5) is None


@pytest.mark.parametrize("off", [False, None])
def test_off(off, capsys):
    assert make_progress(off, 100) is None
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("bad", [1, 0, "stderr", 2.5, object()])
def test_anything_else_is_a_type_error_naming_it(bad):
    with pytest.raises(TypeError, match=re.escape(repr(bad))) as info:
        make_progress(bad, 10)
    assert "file-like" in str(info.value)


@pytest.mark.parametrize("total", [-1, 1.5, True, "10"])
def test_bad_total(total):
    with pytest.raises(ValueError, match="total"):
        Progress(total, io.StringIO())


def test_zero_total():
    out = io.StringIO()
    with Progress(0, out):
        pass
    assert "0/0 items 100%" in out.getvalue()


def test_threads_advancing_concurrently_count_exactly():
    out = io.StringIO()
    bar = Progress(8 * 5000, out, min_interval=0)      # redraw on every advance: worst case
    barrier = threading.Barrier(8)

    def work():
        barrier.wait()
        for _ in range(5000):
            bar.advance(1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    assert bar.done == 40_000
    assert "40000/40000" in last_line(out.getvalue())
    # Every drawn line is whole: no interleaved writes.
    for line in out.getvalue().split("\r")[1:]:
        assert re.fullmatch(r" *\d+/40000 items +\d+% \[[#.]{20}\] .*", line.rstrip("\n")), line


def _spin_1ms(x):
    import time

    end = time.perf_counter() + 0.001
    while time.perf_counter() < end:
        pass
    if x == 150:
        raise ValueError("bad item")
    return x


def _rates(text: str) -> list[float]:
    out = []
    for number, unit in re.findall(r"([\d.]+)(k|M)? items/s", text):
        out.append(float(number) * {"": 1, "k": 1e3, "M": 1e6}[unit])
    return out


def test_a_map_shows_the_sampled_items_at_their_own_pace_and_says_when_it_stopped():
    """Items of 1 ms (at most ~2,000 a second on two cores): the first line counted the
    sample's items as done in the display's first instant (2.4M items/s); a map that
    raised ended its line with "done in"."""
    import amorsize_dask as ad

    stream = io.StringIO()
    assert ad.map(_spin_1ms, range(100), progress=stream, learn=False) == list(range(100))
    assert max(_rates(stream.getvalue())) < 20_000, stream.getvalue()
    assert stream.getvalue().rstrip().split("\r")[-1].strip().endswith("s") and "done in" in stream.getvalue()
    stream = io.StringIO()
    with pytest.raises(ValueError):
        ad.map(_spin_1ms, range(300), progress=stream, learn=False)
    last = stream.getvalue().rstrip().split("\r")[-1]
    assert "stopped after" in last and "done in" not in last, stream.getvalue()
