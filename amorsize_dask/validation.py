"""Checks of user input, each raising an error that names the value and the remedy.

>>> check_engine("threads")
'threads'
>>> check_engine("gpu")
Traceback (most recent call last):
...
ValueError: engine='gpu' is not known; use one of 'auto', 'serial', 'threads', 'processes', 'dask'
"""

from __future__ import annotations

import numbers

__all__ = ["ENGINE_CHOICES", "check_func", "check_engine", "check_positive_int", "check_iterable",
           "check_iterables", "check_progress", "check_training_dir", "check_client", "check_bool",
           "check_call"]

ENGINE_CHOICES = ("auto", "serial", "threads", "processes", "dask")


def check_func(func):
    """``func`` must be callable."""
    if not callable(func):
        raise TypeError(
            f"func must be callable, got {type(func).__name__} {_short_repr(func)}; "
            "pass a function, e.g. amorsize_dask.map(abs, items)"
        )
    return func


def check_engine(engine):
    """``engine`` must be one of :data:`ENGINE_CHOICES`."""
    if engine not in ENGINE_CHOICES:
        allowed = ", ".join(repr(e) for e in ENGINE_CHOICES)
        raise ValueError(f"engine={_short_repr(engine)} is not known; use one of {allowed}")
    return engine


def check_positive_int(name: str, value, remedy: str):
    """``value`` must be None or an int >= 1 (bool is not an int here).

    >>> check_positive_int("chunksize", 0, "or None to let amorsize choose")
    Traceback (most recent call last):
    ...
    ValueError: chunksize=0 must be an integer >= 1, or None to let amorsize choose
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name}={_short_repr(value)} must be an integer >= 1 "
            f"(got {type(value).__name__}), {remedy}"
        )
    if value < 1:
        raise ValueError(f"{name}={value} must be an integer >= 1, {remedy}")
    return int(value)


def check_iterable(iterable):
    """``iterable`` must be iterable (a string is iterable, as for ``builtins.map``), as
    ``iter`` would tell, without calling it: an iterable may hand its items over once (a
    queue drained, a cursor's query), and ``builtins.map`` calls ``iter`` once."""
    cls = type(iterable)
    iterable_type = cls.__iter__ is not None if hasattr(cls, "__iter__") else hasattr(cls, "__getitem__")
    if not iterable_type:
        raise TypeError(
            f"items must be iterable, got {type(iterable).__name__} {_short_repr(iterable)}; "
            "pass a list, tuple, range, numpy array or generator"
        )
    return iterable


def check_iterables(iterables: tuple):
    """At least one iterable, each iterable (``builtins.map`` needs one too).

    >>> check_iterables(())
    Traceback (most recent call last):
    ...
    TypeError: map() needs at least one iterable after func, as builtins.map does: map(func, items) or map(func, xs, ys)
    """
    if not iterables:
        raise TypeError(
            "map() needs at least one iterable after func, as builtins.map does: "
            "map(func, items) or map(func, xs, ys)"
        )
    for iterable in iterables:
        check_iterable(iterable)
    return iterables


def _short_repr(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_progress(progress):
    """``progress`` is a bool, None, or a stream with ``write`` (always shown there)."""
    if progress is None or isinstance(progress, bool) or callable(getattr(progress, "write", None)):
        return progress
    raise TypeError(
        f"progress={_short_repr(progress)} is not allowed; use False, True (a bar on a "
        "terminal) or a stream such as sys.stderr (always shown there)"
    )


def check_training_dir(training_dir):
    """``training_dir`` is None (the configured default), a str or an os.PathLike."""
    import os

    if training_dir is None or isinstance(training_dir, (str, os.PathLike)):
        return training_dir
    raise TypeError(
        f"training_dir={_short_repr(training_dir)} must be a path (str or os.PathLike), or None "
        "for the default (dask config amorsize.training-dir)"
    )


def check_client(client):
    """``client`` is None (the active one, if any) or a ``distributed.Client``."""
    if client is None or (callable(getattr(client, "submit", None)) and hasattr(client, "scheduler_info")):
        return client
    raise TypeError(
        f"client={_short_repr(client)} is not a distributed.Client; pass Client(address) "
        "(e.g. distributed.Client('tcp://host:8786')), or None to use the active one"
    )


def check_bool(name: str, value):
    """``value`` is True or False."""
    if isinstance(value, bool):
        return value
    raise TypeError(f"{name}={_short_repr(value)} must be True or False")


def check_call(func, iterables, *, client, engine, n_workers, chunksize, training_dir) -> tuple:
    """The arguments ``map``, ``imap`` and ``plan`` share, and the settings, checked:
    ``(n_workers, chunksize)``.

    >>> check_call(abs, ([1],), client=None, engine="auto", n_workers=None, chunksize=4, training_dir=None)
    (None, 4)
    """
    checked = check_arguments(func, iterables, client=client, engine=engine, n_workers=n_workers,
                              chunksize=chunksize, training_dir=training_dir)
    check_settings()
    return checked


def check_arguments(func, iterables, *, client, engine, n_workers, chunksize, training_dir) -> tuple:
    """:func:`check_call` without the settings (a call's head reads none: they would load
    numpy and yaml): ``(n_workers, chunksize)``."""
    check_func(func)
    check_iterables(iterables)
    check_engine(engine)
    check_client(client)
    check_training_dir(training_dir)
    n_workers = check_positive_int("n_workers", n_workers, "or None to let amorsize choose")
    chunksize = check_positive_int("chunksize", chunksize, "or None to let amorsize choose")
    return n_workers, chunksize


def check_settings() -> None:
    """The ``amorsize`` settings in dask.config, each checked (a ValueError names a bad one:
    :func:`~amorsize_dask.settings.checked_settings`)."""
    from .settings import checked_settings

    checked_settings()
