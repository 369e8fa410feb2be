"""The process-wide settings a worker takes from its caller: the environment, the umask,
resource limits, the locale and the nice value.

A pool forked now inherits them all; a forkserver's workers inherit the forkserver's,
from when it started, and a pool that was running kept those of its start. Hunt 15: after
``os.umask(0o077)``, ``setrlimit``, ``setlocale`` and ``os.nice(5)``, ``Pool().map`` and
``builtins.map`` saw the new settings; the running pool's workers created files
world-readable (0o644). So a pool is replaced when they change
(:func:`.worker_start.caller_state` holds :meth:`CallerSettings.key`), and each worker
takes them as it starts (:meth:`CallerSettings.apply`).

>>> now = CallerSettings.now()
>>> now.key() == key_now()
True
>>> now.apply()  # the same settings: nothing changes
"""

from __future__ import annotations

import locale
import os
from dataclasses import dataclass

try:
    import resource
except ImportError:  # not POSIX: no limits to carry
    resource = None

__all__ = ["CallerSettings", "key_now"]

# The limits a forked worker would inherit that a function may meet: files it may open,
# memory, stack, file sizes, core dumps, CPU seconds.
_LIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_STACK")


@dataclass(frozen=True)
class CallerSettings:
    environ: dict
    umask: int | None
    limits: tuple  # ((resource, (soft, hard)), ...)
    locale: str | None
    nice: int | None

    @classmethod
    def now(cls) -> "CallerSettings":
        """This process's settings now (a few microseconds)."""
        return cls(dict(os.environ), _umask(), _limits(), _locale(), _nice())

    def key(self) -> tuple:
        """Equal for equal settings, and hashable: :func:`key_now` of these."""
        return (hash(frozenset(self.environ.items())), self.umask, self.limits, self.locale, self.nice)

    def apply(self) -> None:
        """Take these settings in this process (a worker starting); one that cannot be
        taken here (a hard limit the forkserver lowered, a lower nice value, a locale
        this worker lacks) stays as it is."""
        if self.environ != os.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        if self.umask is not None:
            os.umask(self.umask)
        for which, wanted in self.limits:
            if resource.getrlimit(which) != wanted:
                try:
                    resource.setrlimit(which, wanted)
                except (ValueError, OSError):
                    pass
        if self.locale is not None and _locale() != self.locale:
            try:
                locale.setlocale(locale.LC_ALL, self.locale)
            except locale.Error:
                pass
        current = _nice()
        if self.nice is not None and current is not None and self.nice > current:
            os.nice(self.nice - current)


def key_now() -> tuple:
    """``CallerSettings.now().key()`` without copying the environment (~50 us: asked at
    every run, whether the running pool still matches)."""
    return (hash(frozenset(os.environ.items())), _umask(), _limits(), _locale(), _nice())


def _umask() -> int | None:
    """Read without setting it, where the kernel tells (set even for an instant, a file
    another thread creates meanwhile would take the wrong mode); None elsewhere."""
    try:
        fd = os.open("/proc/self/status", os.O_RDONLY)
        try:
            head = os.read(fd, 512)  # "Umask:" is the second line
        finally:
            os.close(fd)
        at = head.index(b"Umask:")
        return int(head[at + 6 : head.index(b"\n", at)], 8)
    except (OSError, ValueError):
        return None


def _limits() -> tuple:
    if resource is None:
        return ()
    found = []
    for name in _LIMITS:
        which = getattr(resource, name, None)
        if which is not None:
            try:
                found.append((which, resource.getrlimit(which)))
            except (ValueError, OSError):
                continue
    return tuple(found)


def _locale() -> str | None:
    try:
        return locale.setlocale(locale.LC_ALL)  # a query: changes nothing
    except locale.Error:
        return None


def _nice() -> int | None:
    try:
        return os.nice(0)
    except (AttributeError, OSError):
        return None
