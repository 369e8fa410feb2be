"""The upkeep of a training directory by its writers: pruning, the size budget, sealing.

:class:`Upkeep` is the part of :class:`~amorsize_dask.learning.store.TrainingStore` that
rewrites the directory — always by the no-lock rules: new files written whole under a
temporary name and renamed, old ones removed only when unchanged since read.

>>> Upkeep.settle_seconds
600.0
"""

from __future__ import annotations

import logging
import os
import pathlib
import threading
import time

from amorsize_dask.learning import sealed, sealing
from amorsize_dask.learning.compaction import on_event_loop, records_to_keep, remove_if_unchanged, segment_bytes
from amorsize_dask.learning.reader import SEGMENTS, identity, is_sealed, sealed_limit
from amorsize_dask.learning.segments import OPEN_SEGMENTS, Segment, hostname, real_directory
from amorsize_dask.settings import Settings, current

__all__ = ["BUDGET_CHECKS", "Upkeep"]

logger = logging.getLogger("amorsize_dask")

# The size budget (amorsize.store.max-bytes) is checked every 1/this of it appended.
BUDGET_CHECKS = 16


class Upkeep:
    """Pruning, the size budget and sealing of a :class:`~amorsize_dask.learning.store.
    TrainingStore` (a mixin: it uses the store's reader, lock and writer)."""

    #: Seconds another process's segment must be quiet before prune compacts it.
    settle_seconds = 600.0

    # -- pruning -----------------------------------------------------------------------
    def prune(self, keep_per_workload: int | None = None, max_bytes: int | None = None,
              settings: Settings | None = None) -> int:
        """Keep the newest ``keep_per_workload`` records per (fingerprint, workload).

        Settled segments and sealed files are compacted into new sealed files (temp file
        + atomic rename), then each is removed only if still exactly as read, so a record
        appended concurrently is never lost. Default ``amorsize.store.keep-per-workload``.
        With ``max_bytes``, the oldest records of settled segments are dropped too
        until the directory's segments hold at most that many bytes.

        Returns
        -------
        int
            The number of records removed.

        Raises
        ------
        OSError
            The compacted segment cannot be written (nothing is removed then).
        """
        settings = current(settings)
        if keep_per_workload is None:
            keep_per_workload = settings.keep_per_workload
        keep = int(keep_per_workload)
        if keep < 0:
            raise ValueError(f"keep_per_workload must be >= 0, got {keep_per_workload!r}")
        if self.compact:
            with self._locked():
                self._close_writer()          # later appends go to a fresh segment
            return type(self)(self.path).prune(keep, max_bytes, settings)
        with self._locked():
            self._close_writer()              # later appends go to a fresh segment
            self._refresh(settings)
            if not real_directory(self.path / SEGMENTS):
                return 0                      # nothing of ours to compact (or a symlink)
            now = time.time()
            segments = self._reader.segments
            removable = sorted(n for n, s in segments.items() if self._settled(n, s, now))
            out, dropped = records_to_keep(self._reader.merged, segments, removable, keep, max_bytes)
            if not dropped and len(removable) <= 1:
                return 0
            self._write_compacted(out, settings)
            self._remove_if_unchanged(removable)
            self._refresh(settings)
            return len(dropped - {identity(r) for r in self._reader.merged})

    def upkeep(self, settings: Settings | None = None) -> None:
        """What a writer's first append does besides writing: seal others' settled
        segments, prune past ``amorsize.store.max-bytes``. For a process that reads the
        directory for another (the scheduler plugin's indexing child), so that the other's
        first append has nothing left to parse."""
        settings = current(settings)
        self._seal(None, settings)
        self._keep_within_budget(settings)

    def _keep_within_budget(self, settings: Settings) -> None:
        """Past ``amorsize.store.max-bytes``, prune to half of it (no one needs to run
        ``prune``). Checked on the first append and then every 1/16 of the budget appended:
        the directory listing costs a stat per segment, the prune a full read. On a thread
        running an event loop (the scheduler's plugin), both run on a thread of their own."""
        budget = settings.size("max_bytes")
        if budget is None:
            return
        with self._locked():
            if self._checked and self._unchecked < budget // BUDGET_CHECKS:
                return
            self._checked, self._unchecked = True, 0
            if self._pruning is not None and self._pruning.is_alive():
                return
        self._pruning = self._off_loop(self._prune_past, budget, settings)

    def _off_loop(self, target, *args) -> threading.Thread | None:
        """Run ``target(*args)`` here, or on a thread of its own when this thread runs an
        event loop (the scheduler's: file I/O must not block it)."""
        if not on_event_loop():
            target(*args)
            return None
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"amorsize-{target.__name__}")
        thread.start()
        return thread

    def _prune_past(self, budget: int, settings: Settings) -> None:
        if segment_bytes(self.path / SEGMENTS) <= budget:
            return
        try:
            removed = self.prune(max_bytes=budget // 2, settings=settings)
        except OSError as exc:                # compaction failed: the originals stay
            logger.warning("amorsize_dask: could not prune the training directory %s: %s", self.path, exc)
            return
        logger.info("amorsize_dask: pruned %d records from %s (over amorsize.store.max-bytes=%s)",
                    removed, self.path, settings.max_bytes)

    def _seal(self, path: pathlib.Path | None, settings: Settings) -> None:
        """Seal our closed segment ``path``, and others' settled ones when enough are
        (:mod:`amorsize_dask.learning.sealing`); never fails the caller (JSON stays)."""
        seg_dir, max_line = self.path / SEGMENTS, settings.size("max_line_bytes")
        seal_bytes, limit = settings.size("seal_bytes"), self._sealed_limit(settings)
        try:
            if path is not None:
                sealing.seal(seg_dir, {path.name: sealing.read_whole(path, max_line)}, seal_bytes, limit)
            now = time.time()
            sealing.seal_settled(seg_dir, settled=lambda name, mtime: self._quiet(name, mtime, now),
                                 max_line=max_line, seal_bytes=seal_bytes, limit=limit)
        except OSError as exc:                # the segments stay, as JSON: nothing is lost
            logger.warning("amorsize_dask: could not seal segments of %s: %s", self.path, exc)

    def _quiet(self, name: str, mtime: float, now: float) -> bool:
        """Is nobody appending to segment ``name`` any more (ours and closed, or quiet for
        ``settle_seconds``)?"""
        if now - mtime >= self.settle_seconds:
            return True
        own = name.startswith(f"{hostname()}-{os.getpid()}-")
        return own and name not in OPEN_SEGMENTS

    def _settled(self, name: str, seg: Segment, now: float) -> bool:
        """May ``name`` be compacted? Not while a writer may still append to it.

        Our own closed segments may; others once quiet for ``settle_seconds`` (a
        torn line that old is abandoned and dropped). The size re-check before
        unlinking and the writers' unlink check cover what remains. A segment
        holding newer-schema records is left for the newer version to prune.
        """
        if seg.skipped["future-schema"] or seg.skipped["corrupt-sealed"]:
            return False
        if is_sealed(name):
            return True                       # written whole, never appended to
        return self._quiet(name, seg.mtime, now) and (now - seg.mtime >= self.settle_seconds or not seg.torn)

    def _write_compacted(self, records: list[dict], settings: Settings) -> None:
        """Write ``records`` as new sealed files, atomically."""
        sealed.write(self.path / SEGMENTS, records, self._sealed_limit(settings))

    @staticmethod
    def _sealed_limit(settings: Settings) -> int:
        return sealed_limit(settings.size("max_segment_bytes"))

    def _remove_if_unchanged(self, names: list[str]) -> None:
        """Unlink segments still exactly as read; a grown one stays (ids deduplicate)."""
        remove_if_unchanged(self.path / SEGMENTS, {name: self._reader.segments[name] for name in names})
