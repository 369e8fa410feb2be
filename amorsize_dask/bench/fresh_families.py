"""Workloads of ``bench --fresh``, as the source text of a user's script.

Each family is the code a user would write at the top of a script (functions, and the
expression that builds the items), so that every tool runs it as users do: functions
defined in ``__main__``, imports paid in the script. The suite's families
(:mod:`.workloads`) come first, then families that vary what the suite does not: job
length below 0.1 s and between 0.1 and 1 s, large results, large inputs, C code that
releases the GIL, allocation, a skewed tail, pandas, a function that reads a large
module-level table, a method of the script's object that holds a large index.

>>> sorted(FAMILIES)[:3]
['alloc', 'big-global', 'big-inputs']
>>> len(FAMILIES) >= 13
True
"""

from __future__ import annotations

from dataclasses import dataclass

_SPIN = '''
def _spin(units):
    acc = 0
    for i in range(units * 250):
        acc = (acc + i * i) % 1_000_003
    return acc
'''


@dataclass(frozen=True)
class Family:
    source: str  # defines ``func`` (and whatever it needs)
    items: str  # an expression building the items (``scale`` multiplies counts)
    what: str


FAMILIES: dict[str, Family] = {
    # -- the suite's families (bench/workloads.py), written as a script would ------------
    "tiny": Family('''
def func(x):
    for _ in range(12):
        x = (x * 31 + 7) % 1_000_003
    return x
''', "list(range(n(100_000)))", "100k items of ~1 us"),
    "cpu-1ms": Family(_SPIN + '''
def func(x):
    return _spin(65) + x
''', "list(range(n(2_000)))", "2k items of ~1 ms"),
    "heavy": Family(_SPIN + '''
def func(x):
    return _spin(4000) + x
''', "list(range(n(24)))", "24 items of ~80 ms"),
    "skewed": Family(_SPIN + '''
def func(x):
    return _spin(660 if (x * 7919) % 50 == 3 else 16) + x
''', "list(range(n(2_000)))", "2k items, 2% 40x dearer"),
    "payload": Family('''
import numpy as np

def func(a):
    return float(a.sum())
''', "[np.full(131_072, float(i)) for i in range(n(400))]", "400 arrays of 1 MB, cheap"),
    "io-wait": Family('''
import time

def func(x):
    time.sleep(0.002)
    return x
''', "list(range(n(1_000)))", "1k sleeps of 2 ms"),
    "numpy-nogil": Family('''
import numpy as np
_BASE = np.random.default_rng(0).random(100_000)

def func(x):
    return float(np.sort(_BASE * (x + 1))[x % 1000])
''', "list(range(n(400)))", "400 numpy sorts (GIL released)"),
    # -- new families ---------------------------------------------------------------------
    "short-cpu": Family(_SPIN + '''
def func(x):
    return _spin(20) + x
''', "list(range(n(200)))", "200 x 0.2 ms: a 40 ms job"),
    "mid-cpu": Family(_SPIN + '''
def func(x):
    return _spin(100) + x
''', "list(range(n(300)))", "300 x 1.5 ms: a 0.45 s job"),
    "big-results": Family(_SPIN + '''
def func(x):
    _spin(40)
    return bytes([x % 256]) * 1_000_000
''', "list(range(n(100)))", "100 x 0.4 ms returning 1 MB each"),
    "big-inputs": Family('''
import numpy as np

def func(a):
    return float(np.median(a))
''', "[np.random.default_rng(i).random(262_144) for i in range(n(100))]", "100 arrays of 2 MB, median"),
    "gil-free-c": Family('''
import hashlib

def func(block):
    digest = block
    for _ in range(8):
        digest = hashlib.sha256(digest * 4096).digest()
    return digest.hex()
''', "[bytes([i % 251]) * 4096 for i in range(n(400))]", "400 x 8 sha256 of 128 KB (GIL released)"),
    "alloc": Family('''
def func(x):
    table = {i: [i, str(i)] for i in range(2_000 + x % 7)}
    return len(table) + len(table[x % 2_000][1])
''', "list(range(n(600)))", "600 x a 2k-entry dict of lists"),
    "skew-tail": Family(_SPIN + '''
def func(x):
    return _spin(3000 if x % 40 == 39 else 10) + x
''', "list(range(n(400)))", "400 items: 0.1 ms, every 40th 30 ms"),
    "pandas-groupby": Family('''
import numpy as np
import pandas as pd

def func(frame):
    return frame.groupby("key")["value"].sum().to_dict()
''', "[pd.DataFrame({'key': np.arange(2_000) % 17, 'value': np.arange(2_000) * 1.0 + i}) "
     "for i in range(n(200))]", "200 pandas groupbys of 2k rows"),
    "big-global": Family('''
# A lookup table the script builds at its top (~30 MB): the function reads it as a global.
TABLE = {i: str(i) * 3 for i in range(300_000)}

def func(x):
    acc = 0
    for i in range(200):
        acc += len(TABLE[(x * 31 + i) % 300_000])
    return acc
''', "list(range(n(2_000)))", "2k items reading a 300k-entry module-level dict"),
    "big-instance": Family('''
# A method of the script's own object, which holds a 200k-entry index (~15 MB): its
# attributes must stay inline (asking for its __dict__ slows every later self.table) and
# a forked worker copies the index's pages as it reads them.
class Index:
    def __init__(self, n):
        self.table = {i: str(i) for i in range(n)}
        self.size = n

    def score(self, x):
        acc = 0
        for i in range(100):
            acc += len(self.table[(x * 7 + i) % self.size])
        return acc

func = Index(200_000).score
''', "list(range(n(3_000)))", "3k calls of a bound method of a 200k-entry index"),
}
