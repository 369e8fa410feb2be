"""The ``Plan``: what a ``map`` call will do, and why.

>>> p = Plan(engine="serial", n_workers=1, chunksize=1, n_tasks=0, source="default",
...          confidence=1.0, predicted_seconds=0.0, n_items=0, reasons=("no items",))
>>> print(p.explain())
engine=serial  workers=1  chunksize=1  tasks=0  items=0
source=default  confidence=1.00  predicted=0 s
- no items
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["Plan", "format_seconds", "format_bytes"]


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A frozen decision: engine, workers, items per task, and the figures behind it.

    ``source`` is ``"model"`` (predicted from measured past runs), ``"sample"`` (from timing
    the first items now) or ``"default"`` (no measurement: empty input or fixed by the caller).
    ``n_items`` counts every item; the first ``n_sampled`` were computed while planning, the
    last ``n_speculated`` started on the warm process pool meanwhile, and ``n_tasks`` tasks of
    ``chunksize`` items carry the rest.
    """

    engine: str
    n_workers: int
    chunksize: int
    n_tasks: int
    source: str
    confidence: float
    predicted_seconds: float
    n_items: int = 0
    n_sampled: int = 0
    n_speculated: int = 0
    explored: bool = False
    predicted_serial_seconds: float | None = None
    planning_seconds: float = 0.0
    fingerprint: str = ""
    workload: str = ""
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def explain(self) -> str:
        """A few lines a person can read: the choice, then the measured figures behind it."""
        lines = [
            f"engine={self.engine}  workers={self.n_workers}  chunksize={self.chunksize}"
            f"  tasks={self.n_tasks}  items={self.n_items}",
            f"source={self.source}  confidence={self.confidence:.2f}"
            f"  predicted={format_seconds(self.predicted_seconds)}"
            + (
                f"  (serial {format_seconds(self.predicted_serial_seconds)})"
                if self.predicted_serial_seconds is not None
                else ""
            )
            + (f"  planning={format_seconds(self.planning_seconds)}" if self.planning_seconds else ""),
        ]
        lines += [f"- {reason}" for reason in self.reasons]
        return "\n".join(lines)

    def replace(self, **changes) -> "Plan":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def format_seconds(seconds: float | None) -> str:
    """Seconds with a unit a person reads at a glance.

    >>> format_seconds(0.0000012), format_seconds(0.0042), format_seconds(3.5)
    ('1.2 us', '4.2 ms', '3.5 s')
    """
    if seconds is None:
        return "?"
    if seconds == 0:
        return "0 s"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} us"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def format_bytes(n: float) -> str:
    """Bytes with a unit.

    >>> format_bytes(28), format_bytes(1048576)
    ('28 B', '1 MiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} GiB"
