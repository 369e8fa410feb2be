"""The CPU model of each host of a cluster, for its fingerprint.

Dask's workers do not report their CPU. The first client that sees a host ask one of its
workers (``Client.run``) and leaves the answer in the scheduler's metadata under
:data:`~amorsize_dask.target.fingerprint.CPU_MODELS_METADATA`, where every later client
and the scheduler plugin (``fingerprint.workers_from_scheduler``) read it: both compute
one fingerprint for one cluster. A host that cannot be asked stays unknown; a map never
fails for it.

>>> told({"tcp://10.0.0.1:4001": {"host": "10.0.0.1"}}, {"10.0.0.1": "Xeon"})
{'tcp://10.0.0.1:4001': {'host': '10.0.0.1', 'cpu_model': 'Xeon'}}
"""

from __future__ import annotations

import importlib
import logging

from ..target import machine
from ..target.fingerprint import CPU_MODELS_METADATA

__all__ = ["ASK_TIMEOUT_SECONDS", "with_cpu_models", "told", "PackageMissingOnWorkers"]

logger = logging.getLogger("amorsize_dask")

# How long the workers of new hosts are waited for (a worker answers in ~1-10 ms from its
# event loop, busy or not: /tmp/d21/cpu.py, session 21).
ASK_TIMEOUT_SECONDS = 2.0


def with_cpu_models(client, workers: dict) -> dict:
    """``workers`` (``scheduler_info()["workers"]``) with each entry's ``cpu_model``, asking
    the hosts no client has asked yet (one worker each) and telling the scheduler."""
    answers = {}
    try:
        known = dict(client.get_metadata(CPU_MODELS_METADATA, default=None) or {})
        ask = {}
        for address, info in workers.items():
            host = str(info.get("host") or "")
            if host not in known and host not in ask.values():
                ask[address] = host
        if ask:
            # Client.run waits for every worker asked, with no deadline of its own: a paused one
            # (SIGSTOP, hunt 14) would hold the map; it stays unknown instead.
            answers = client.sync(client._run, _cpu_model, workers=list(ask), on_error="return",
                                  callback_timeout=ASK_TIMEOUT_SECONDS)
            for address, model in answers.items():
                if isinstance(model, str):
                    known[ask[address]] = model
                    client.set_metadata([CPU_MODELS_METADATA, ask[address]], model)
    except Exception as exc:  # a worker gone, or paused: the models stay unknown
        logger.debug("amorsize_dask: could not learn the cluster's CPU models (%r)", exc)
        return workers
    _raise_if_the_package_is_missing(answers)
    return told(workers, known)


def _raise_if_the_package_is_missing(answers: dict) -> None:
    """A worker that cannot import this package (the CPU model's question is its function)
    would fail every amorsize task: the first task it could not load broke its connection,
    the worker stopped and the map waited for ever (hunt 16, a worker from another venv)."""
    missing = sorted(address for address, answer in answers.items() if _cannot_import_us(answer))
    if missing:
        raise PackageMissingOnWorkers(missing, next(answers[a] for a in missing))


def _cannot_import_us(answer) -> bool:
    """Is ``answer`` a worker's failure to import this package, which the question's function
    is in (distributed returns it as an ``Exception`` holding the ImportError's repr): a worker
    without the package, another version of it, or without one it needs (numpy)?"""
    text = repr(answer)
    return isinstance(answer, ImportError) or (
        isinstance(answer, BaseException) and ("ModuleNotFoundError" in text or "ImportError" in text))


class PackageMissingOnWorkers(RuntimeError):
    """Workers of the cluster cannot import amorsize_dask."""

    def __init__(self, addresses: list, cause: BaseException):
        from .. import __version__

        shown = ", ".join(addresses[:3]) + (f" and {len(addresses) - 3} more" if len(addresses) > 3 else "")
        said = str(cause) if type(cause) is Exception else f"{type(cause).__name__}: {cause}"  # distributed's wrap
        super().__init__(f"amorsize_dask: the Dask worker(s) {shown} cannot import amorsize_dask "
                         f"({said}); install amorsize_dask {__version__} in the workers' "
                         "environment, as this client has it, or map here with engine='processes'")


def told(workers: dict, known: dict) -> dict:
    """Copies of the worker entries, each with its host's model from ``known`` (if any)."""
    out = {}
    for address, info in workers.items():
        model = known.get(str(info.get("host") or ""))
        out[address] = {**info, "cpu_model": model} if model else info
    return out


def _cpu_model() -> str:
    """Run on a worker: its CPU model (``"unknown"`` where the platform does not say), once
    the modules this package's tasks run there import (an ImportError is a worker that
    cannot run them: :func:`_raise_if_the_package_is_missing`)."""
    importlib.import_module("amorsize_dask.cluster.sampling")  # settings, chunks, numpy

    return machine.cpu_model() or "unknown"
