"""A one-line progress display for ``map``: items done / total, rate and ETA.

The line is redrawn in place with ``'\\r'``, at most every ``min_interval``
seconds, from whichever thread the engine reports progress on.

>>> import io
>>> ticks = iter([0.0, 1.0, 2.0, 4.0])           # a fake clock: 0 s, 1 s, 2 s, 4 s
>>> out = io.StringIO()
>>> bar = Progress(100, out, clock=lambda: next(ticks))
>>> bar.advance(25)                               # at 1 s: 25 items/s, 3 s to go
>>> bar.advance(75)                               # at 2 s
>>> bar.close()                                   # at 4 s
>>> print(out.getvalue().split("\\r")[1].rstrip())
 25/100 items  25% [#####...............] 25 items/s  ETA 3 s
>>> print(out.getvalue().split("\\r")[-1].rstrip())
100/100 items 100% [####################] 25 items/s  done in 4.00 s
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Callable

__all__ = ["Progress", "make_progress"]

_BAR_WIDTH = 20


class Progress:
    """Items done out of ``total``, the rate and the time left, on one redrawn line.

    Parameters
    ----------
    total : int or None
        Items expected (>= 0); None for a stream of unknown length (count and rate only).
    stream : file-like
        Where the line goes (anything with ``.write``; ``.flush`` is used if present).
    min_interval : float
        Seconds between redraws at least; the first and the last state are always drawn.
    clock : callable, optional
        Seconds as a float (default :func:`time.perf_counter`); tests inject one.

    :meth:`advance` is thread-safe. A stream that fails (closed, broken pipe)
    silences the display instead of failing the ``map`` it reports on.
    """

    def __init__(self, total: int, stream, min_interval: float = 0.1, *,
                 clock: Callable[[], float] = time.perf_counter, start: float | None = None):
        if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
            raise ValueError(f"total must be an int >= 0 or None (unknown), got {total!r}")
        if not callable(getattr(stream, "write", None)):
            raise TypeError(f"stream must be a file-like object with .write, got {stream!r}")
        if not (isinstance(min_interval, (int, float)) and min_interval >= 0):
            raise ValueError(f"min_interval must be a number of seconds >= 0, got {min_interval!r}")
        self.total = total
        self.stream = stream
        self.min_interval = float(min_interval)
        self._clock = clock
        self._lock = threading.Lock()
        self._done = 0
        self._start = clock() if start is None else start  # ``start``: when the work began, by ``clock``
        self._last_draw = -math.inf
        self._width = 0          # length of the line on screen, to blank a longer one
        self._closed = False
        self._broken = False

    @property
    def done(self) -> int:
        """Items reported so far."""
        return self._done

    def advance(self, n: int) -> None:
        """Count ``n`` more items done; redraw if ``min_interval`` has passed."""
        with self._lock:
            self._done += n
            if self._closed:
                return
            now = self._clock()
            if now - self._last_draw >= self.min_interval:
                self._last_draw = now
                self._draw(self._line(now))

    def close(self, stopped: bool = False) -> None:
        """Draw the final line, with the total time, and end it with a newline (once).
        ``stopped``: the work ended with an error, not done."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._draw(self._line(self._clock(), final="stopped after" if stopped else "done in"), end="\n")

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Progress({self._done}/{self.total})"

    def _line(self, now: float, final: str = "") -> str:
        """The line to draw; ``final``: its last words before the time taken."""
        elapsed = max(now - self._start, 0.0)
        done, total = self._done, self.total
        rate = done / elapsed if elapsed > 0 else math.nan
        if total is None:  # a stream of unknown length: count and rate, no share
            line = f"{done} items {_format_rate(rate)}"
            return f"{line}  {final} {elapsed:.2f} s" if final else line
        digits = len(str(total))
        share = 1.0 if total == 0 else min(done / total, 1.0)
        filled = int(round(share * _BAR_WIDTH))
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        line = f"{done:>{digits}}/{total} items {share:4.0%} [{bar}] {_format_rate(rate)}"
        if final:
            return f"{line}  {final} {elapsed:.2f} s"
        if done and math.isfinite(rate) and rate > 0 and done < total:
            return f"{line}  ETA {_format_eta((total - done) / rate)}"
        return line

    def _draw(self, line: str, end: str = "") -> None:
        if self._broken:
            return
        pad = " " * max(self._width - len(line), 0)
        self._width = len(line)
        try:
            self.stream.write("\r" + line + pad + end)
            flush = getattr(self.stream, "flush", None)
            if flush is not None:
                flush()
        except (OSError, ValueError):    # closed stream, broken pipe: stop drawing
            self._broken = True


def _format_rate(rate: float) -> str:
    """Items per second, compact.

    >>> _format_rate(0.25), _format_rate(812.4), _format_rate(48_000.0), _format_rate(float("nan"))
    ('0.25 items/s', '812 items/s', '48.0k items/s', '- items/s')
    """
    if not math.isfinite(rate):
        return "- items/s"
    if rate >= 1e6:
        return f"{rate / 1e6:.1f}M items/s"
    if rate >= 1e4:
        return f"{rate / 1e3:.1f}k items/s"
    return f"{rate:.3g} items/s"


def _format_eta(seconds: float) -> str:
    """Time left, as a person reads it.

    >>> _format_eta(4e-5), _format_eta(0.4), _format_eta(42.2), _format_eta(185), _format_eta(7300)
    ('<0.1 s', '0.4 s', '42 s', '3m05s', '2h01m')
    """
    if seconds < 0.1:
        return "<0.1 s"
    if seconds < 1:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def make_progress(progress, total: int | None, start: float | None = None) -> Progress | None:
    """The :class:`Progress` that ``map(..., progress=progress)`` asks for, or None;
    ``start``: when the call began (``time.perf_counter``), so that items done before the
    display (the sample's) count at their own pace, not all in its first instant.

    ``False``/``None``: none. ``True``: on ``sys.stderr``, only if it is a terminal or a
    Jupyter notebook's output (so logs and pipes stay clean). A file-like object (with
    ``.write``): always on that stream, since the caller asked for it.

    >>> make_progress(False, 10) is None
    True
    >>> import io
    >>> make_progress(io.StringIO(), 10)
    Progress(0/10)
    >>> make_progress("yes", 10)
    Traceback (most recent call last):
    ...
    TypeError: progress must be True, False, None or a file-like object with .write, got 'yes'
    """
    if progress is None or progress is False:
        return None
    if progress is True:
        stream = sys.stderr
        return Progress(total, stream, start=start) if _is_terminal(stream) or _is_notebook(stream) else None
    if callable(getattr(progress, "write", None)):
        return Progress(total, progress, start=start)
    raise TypeError("progress must be True, False, None or a file-like object with .write, "
                    f"got {progress!r}")


def _is_notebook(stream) -> bool:
    """Is ``stream`` a Jupyter kernel's output (ipykernel's ``OutStream``), which draws a
    ``\r`` line in place as a terminal does? ``progress=True`` showed nothing there."""
    return type(stream).__module__.startswith("ipykernel.")


def _is_terminal(stream) -> bool:
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, OSError, ValueError):  # no isatty, or a closed stream
        return False
