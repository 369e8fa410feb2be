"""Functions the faults map over: module level, since they travel to workers by reference."""

from __future__ import annotations

import os
import pathlib
import threading
import time


def square(x):
    return x * x


def spin(x, units: int = 300):
    acc = 0
    for i in range(units):
        acc += i
    return acc + x


def worker_pid(_x):
    return os.getpid()


def fail_on_13(x):
    if x == 13:
        raise ValueError(f"thirteen is unlucky: {x}")
    return x


def lock_on_13(x):
    return threading.Lock() if x == 13 else x


class PidLog:
    """Appends ``"<pid> <item>"`` per call to a file, then sleeps: progress visible outside."""

    def __init__(self, path, delay: float):
        self.path, self.delay = str(path), delay

    def __call__(self, x):
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()} {x}\n")
        time.sleep(self.delay)
        return x * 3


def logged(path) -> list[tuple[int, int]]:
    try:
        text = pathlib.Path(path).read_text()
    except FileNotFoundError:
        return []
    return [tuple(map(int, ln.split())) for ln in text.splitlines() if len(ln.split()) == 2]
