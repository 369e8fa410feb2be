"""Client-side wrappers for the handlers of :class:`amorsize_dask.cluster.plugin.AmorsizePlugin`.

Each is one RPC to the scheduler of a (synchronous) ``distributed.Client``. Errors the
plugin raises (a malformed request) arrive here as the same exception type.

>>> has_plugin(None)
False
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
import weakref

from ..learning.model import Prediction
from .cpu_models import with_cpu_models

__all__ = ["METADATA_KEY", "has_plugin", "forget", "uses_training_dir", "ping", "remote_plan", "wait_for_a_worker",
           "register_run", "finish_run", "remote_target", "prediction_from_reply", "cluster_workers", "plugin_failed"]

# The scheduler's task metadata key under which a running plugin announces itself.
METADATA_KEY = "amorsize-plugin"

logger = logging.getLogger("amorsize_dask")

# A scheduler without the plugin logs a warning for every unknown op it is sent, so a
# "no plugin" answer is trusted this long before asking again (a plugin registered later
# is found within this time; forget(client) asks at once).
NEGATIVE_SECONDS = 300.0
# RPC timeouts: a ping or a registration is a few ms; a plan may first read the store.
PING_TIMEOUT = "10s"
PLAN_TIMEOUT = "60s"

_known: "weakref.WeakKeyDictionary[object, tuple[bool, str, float]]" = weakref.WeakKeyDictionary()


def has_plugin(client) -> bool:
    """Whether the scheduler behind ``client`` runs the amorsize plugin (cached per client).

    False for no client, an asynchronous client, or any failure to ask.
    """
    if client is None or getattr(client, "asynchronous", False):
        return False
    address = str(getattr(client.scheduler, "address", ""))
    try:
        found, addr, expires = _known[client]
        if addr == address and (found or time.monotonic() < expires):
            return found
    except (KeyError, TypeError):
        pass
    try:
        # The plugin announces itself in the scheduler's task metadata: asking there costs
        # a scheduler without the plugin nothing (an unknown handler would log a warning).
        reply = client.sync(client.scheduler.get_metadata, keys=[METADATA_KEY], default=None,
                            callback_timeout=PING_TIMEOUT)
        found = isinstance(reply, dict) and reply.get("name") == "amorsize"
    except Exception as exc:
        logger.debug("amorsize plugin ping to %s failed: %s", address, exc)
        found = False
    _remember(client, found)
    return found


def forget(client, found: bool | None = None) -> None:
    """Drop what is known about ``client``'s plugin (or remember ``found`` for it)."""
    if found is None:
        _known.pop(client, None)
    else:
        _remember(client, found)


def _remember(client, found: bool) -> None:
    try:
        _known[client] = (found, str(getattr(client.scheduler, "address", "")),
                          time.monotonic() + NEGATIVE_SECONDS)
    except TypeError:  # not weak-referenceable: ask every time
        pass


_dirs: "weakref.WeakKeyDictionary[object, tuple[str, str]]" = weakref.WeakKeyDictionary()


def uses_training_dir(client, training_dir: str) -> bool:
    """Whether the plugin behind ``client`` records to ``training_dir`` (asked once per
    client and scheduler address); False without the plugin.

    >>> uses_training_dir(None, "/tmp/training")
    False
    """
    if not has_plugin(client):
        return False
    address = str(getattr(client.scheduler, "address", ""))
    known = _dirs.get(client) if _weakrefable(client) else None
    if known is None or known[0] != address:
        known = (address, os.path.realpath(str(ping(client)["training_dir"])))
        if _weakrefable(client):
            _dirs[client] = known
    return known[1] == os.path.realpath(training_dir)


def _weakrefable(obj) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def ping(client) -> dict | None:
    """The plugin's ``amorsize_ping`` reply, None without the plugin."""
    return client.sync(client.scheduler.amorsize_ping, callback_timeout=PING_TIMEOUT)


def remote_plan(client, workload: str, function: str, n_items: int, explore: bool = True) -> dict:
    """The plugin's plan: ``{"fingerprint", "fields", "cores", "plan": None | {...}}``."""
    return client.sync(client.scheduler.amorsize_plan, workload=workload, function=function,
                       n_items=n_items, explore=explore, callback_timeout=PLAN_TIMEOUT)


def wait_for_a_worker(client) -> None:
    """Wait for the cluster's first worker as ``Client.map``'s tasks wait: with a task queued
    (``int()``, which any worker can load), for which an adaptive cluster scaled to zero
    starts one. Waiting with nothing queued (``Client.wait_for_workers``) hung for ever there
    (hunt 16: ``cluster.adapt(minimum=0)``, ``AmorsizeAdaptive`` too)."""
    future = client.submit(int, key=f"amorsize-wait-for-a-worker-{uuid.uuid4().hex}", pure=False)
    try:
        future.result()
    finally:
        future.release()


def register_run(client, run: dict) -> None:
    """Tell the plugin about a run about to start; it follows the run's tasks as they finish."""
    client.sync(client.scheduler.amorsize_run, run=run, callback_timeout=PING_TIMEOUT)


def finish_run(client, run_id: str) -> bool:
    """The run succeeded: the plugin writes its record (True), or cannot (False: record it here)."""
    return bool(client.sync(client.scheduler.amorsize_done, run_id=run_id, callback_timeout=PING_TIMEOUT))


def remote_target(client, target_duration: float = 5.0) -> int:
    """Worker threads the pending amorsize work needs to finish in ``target_duration`` (0: none)."""
    return client.sync(client.scheduler.amorsize_target, target_duration=target_duration,
                       callback_timeout=PING_TIMEOUT)


def prediction_from_reply(found: dict) -> Prediction:
    """The :class:`Prediction` a plugin's plan reply carries (its tuples travel as lists)."""
    fields = {f.name: found[f.name] for f in dataclasses.fields(Prediction) if f.name in found}
    if fields.get("best_config") is not None:
        fields["best_config"] = tuple(fields["best_config"])
    return Prediction(**fields)


# The cluster's workers (scheduler_info, every worker's details) per client, fetched again
# only when the cheap {address: threads} check says workers arrived or left.
_SHAPES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def cluster_workers(client) -> dict:
    """``scheduler_info()["workers"]`` of ``client``'s cluster with their CPU models
    (:func:`~amorsize_dask.cluster.cpu_models.with_cpu_models`), cached until its workers change."""
    if getattr(client, "asynchronous", False):
        raise TypeError(
            f"amorsize_dask needs a synchronous distributed.Client, got an asynchronous one ({client!r}); "
            "from async code, map in a thread with a Client made in that thread (one made on the event "
            "loop's thread waits for that loop): def run(): with Client(address) as c: return "
            "amorsize_dask.map(func, items, client=c); then await asyncio.to_thread(run)"
        )
    nthreads = client.nthreads()
    try:
        known, workers = _SHAPES.get(client, (None, None))
    except TypeError:  # not weak-referenceable
        known, workers = None, None
    if known != nthreads or workers is None:
        workers = with_cpu_models(client, client.scheduler_info(n_workers=-1)["workers"])
        try:
            _SHAPES[client] = (nthreads, workers)
        except TypeError:
            pass
    return workers


_warned_plugin: set = set()


def plugin_failed(client, what: str, exc: Exception) -> None:
    """A plugin RPC failed: warn once per scheduler, stop asking it for a while, go on here."""
    address = str(getattr(getattr(client, "scheduler", None), "address", client))
    forget(client, found=False)
    if address not in _warned_plugin:
        _warned_plugin.add(address)
        logger.warning("amorsize_dask: could not %s the scheduler plugin at %s (%s: %s); "
                       "planning and recording on this client instead", what, address, type(exc).__name__, exc)
