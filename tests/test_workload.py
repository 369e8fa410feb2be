"""function_key: equal for the same code everywhere, different when behaviour may differ."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = pathlib.Path(__file__).resolve().parents[1]
if importlib.util.find_spec("amorsize_dask") is None:  # not installed: test this checkout
    sys.path.insert(0, str(ROOT))

from amorsize_dask.target import workload
from amorsize_dask.target.workload import function_key, function_name


HELPER_SOURCE = textwrap.dedent(
    """
    import math
    import numpy as np

    SCALE = 3
    WORDS = ("a", "b")

    def slow(x):
        return sum(i for i in range(1000)) + x

    def work(x):
        if x in {"alpha", "beta", "gamma", "delta"}:
            return 0
        return slow(x) * SCALE + len(WORDS) + math.sqrt(x) + np.sqrt(x)

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    class Scaler:
        def __call__(self, x):
            return x * SCALE

        def double(self, x):
            return 2 * x

    CALLABLES = {
        "work": work,
        "fib": fib,
        "lambda": lambda x: {"k": x, "s": {"p", "q", "r"}},
        "instance": Scaler(),
        "method": Scaler().double,
        "np.sqrt": np.sqrt,
        "math.sqrt": math.sqrt,
        "len": len,
    }
    """
)

LAMBDA_SCRIPT = textwrap.dedent(
    """
    import functools
    from amorsize_dask.target.workload import function_key
    K = 7
    f = lambda x: x * K if x not in {"u", "v", "w"} else None
    g = functools.partial(f, 3)
    print(function_key(f), function_key(g))
    """
)


def _run(script: str, hashseed: str, extra_path: str = "") -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [extra_path, str(ROOT), env.get("PYTHONPATH")])
    )
    env["PYTHONHASHSEED"] = hashseed
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _exec(source: str, **namespace) -> dict:
    """Define functions from the same source in a fresh global namespace."""
    namespace.setdefault("__name__", "generated")
    exec(compile(textwrap.dedent(source), "<generated>", "exec"), namespace)
    return namespace


# -- format, cache, speed ---------------------------------------------------------


def test_key_format_and_repeatable():
    def f(x):
        return x + 1

    key = function_key(f)
    assert len(key) == 16 and all(c in "0123456789abcdef" for c in key)
    assert function_key(f) == key
    assert f in workload._cache  # weakly cached, keyed by the function object


def test_repeated_call_is_answered_from_the_cache():
    # Cached per function object, so a repeated call costs microseconds (measured ~0.3 us):
    # shown by the cache's documented assumption, not by a clock on a shared machine.
    def f(x):
        return helper_global(x) + 1  # noqa: F821 (not defined: skipped)

    def g(x):
        return x * 2

    first = function_key(f)
    f.__code__ = g.__code__          # rebound after the first call: the cache still answers
    assert function_key(f) == first
    assert function_key(g) != first   # the same code in a function object not seen before


def test_cache_is_weak():
    import gc

    f = _exec("def f(x):\n    return x\n")["f"]
    function_key(f)
    size = len(workload._cache)
    del f
    gc.collect()
    assert len(workload._cache) < size


# -- what makes keys differ -----------------------------------------------------------


def test_constants_differ():
    assert function_key(lambda x: x * 2) != function_key(lambda x: x * 1000)
    assert function_key(lambda x: x * 2) == function_key(lambda x: x * 2)


def test_same_bytecode_different_called_globals_differ():
    source = "def f(x):\n    return g(x)\n"
    slow = _exec("def g(x):\n    return sum(range(10**6)) + x\n")["g"]
    fast = _exec("def g(x):\n    return x\n")["g"]
    f_slow = _exec(source, g=slow)["f"]
    f_fast = _exec(source, g=fast)["f"]
    f_fast_again = _exec(source, g=fast)["f"]
    assert f_slow.__code__.co_code == f_fast.__code__.co_code
    assert function_key(f_slow) != function_key(f_fast)
    assert function_key(f_fast) == function_key(f_fast_again)


def test_globals_two_levels_down_and_constants_differ():
    source = "def f(x):\n    return h(x)\n"
    def make(inner_source):
        inner = _exec(inner_source)["g"]
        h = _exec("def h(x):\n    return g(x)\n", g=inner)["h"]
        return _exec(source, h=h)["f"]

    assert function_key(make("def g(x):\n    return x\n")) != function_key(
        make("def g(x):\n    return x * x\n")
    )
    const = "def f(x):\n    return x * K\n"
    assert function_key(_exec(const, K=2)["f"]) != function_key(_exec(const, K=3)["f"])
    assert function_key(_exec(const, K=2)["f"]) == function_key(_exec(const, K=2)["f"])
    tup = "def f(x):\n    return x in T\n"
    assert function_key(_exec(tup, T=(1, 2))["f"]) != function_key(_exec(tup, T=(1, 3))["f"])


def test_module_references_differ():
    source = "def f(x):\n    return m.sqrt(x)\n"
    assert function_key(_exec(source, m=math)["f"]) != function_key(_exec(source, m=np)["f"])


def test_closures_differ_by_captured_value():
    def make(factor):
        return lambda x: x * factor

    assert function_key(make(2)) != function_key(make(3))
    assert function_key(make(2)) == function_key(make(2))

    def wrap(fn):
        return lambda x: fn(x)

    assert function_key(wrap(abs)) != function_key(wrap(len))
    assert function_key(wrap(lambda x: x)) != function_key(wrap(lambda x: -x))

    def capture_object(obj):
        return lambda x: obj

    # Non-simple captured values are represented by their type only.
    assert function_key(capture_object([1])) == function_key(capture_object([2]))
    assert function_key(capture_object([1])) != function_key(capture_object({1: 2}))


def test_defaults_differ():
    src = "def f(x, n=N):\n    return x * n\n"
    assert function_key(_exec(src, N=1)["f"]) != function_key(_exec(src, N=2)["f"])


def test_partial_args_differ():
    def power(x, n):
        return x**n

    assert function_key(functools.partial(power, n=2)) != function_key(
        functools.partial(power, n=3)
    )
    assert function_key(functools.partial(power, n=2)) == function_key(
        functools.partial(power, n=2)
    )
    assert function_key(functools.partial(power, 2)) != function_key(functools.partial(power, 3))
    assert function_key(functools.partial(power, n=2)) != function_key(power)


@settings(max_examples=50, deadline=None)
@given(st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_key_equal_iff_constant_equal(a, b):
    fa = eval(f"lambda x: x * {a}")
    fb = eval(f"lambda x: x * {b}")
    assert (function_key(fa) == function_key(fb)) == (a == b)


# -- kinds of callables ---------------------------------------------------------------


def test_builtins_and_ufuncs():
    assert function_key(len) != function_key(abs)
    assert function_key(math.sqrt) != function_key(np.sqrt)
    assert function_key(np.sqrt) != function_key(np.exp)
    assert function_key(np.sqrt) == function_key(np.sqrt)
    assert function_key([].append) == function_key([1].append)
    assert function_name(len) == "builtins.len"
    assert function_name(math.sqrt) == "math.sqrt"
    assert function_name(np.sqrt) == "numpy.sqrt"


class Adder:
    def __init__(self, n=1):
        self.n = n

    def __call__(self, x):
        return x + self.n

    def add(self, x):
        return x + self.n

    def sub(self, x):
        return x - self.n

    @classmethod
    def make(cls):
        return cls()


class Multiplier:
    def __call__(self, x):
        return x * 2


class Unhashable:
    __hash__ = None

    def __eq__(self, other):
        return True

    def __call__(self, x):
        return x


def test_callable_instances():
    assert function_key(Adder(1)) == function_key(Adder(5))
    assert function_key(Adder(1)) != function_key(Multiplier())
    assert function_key(Adder(1)) != function_key(Adder.__call__)
    assert function_key(Unhashable()) == function_key(Unhashable())
    assert function_name(Adder()).endswith("Adder")
    assert function_key(Adder) != function_key(Multiplier)  # classes as callables


def test_bound_methods():
    a, b = Adder(1), Adder(2)
    assert function_key(a.add) == function_key(b.add)
    assert function_key(a.add) != function_key(a.sub)
    assert function_key(a.add) != function_key(Adder.add)  # plus the class
    assert function_key(Adder.make) == function_key(Adder.make)
    assert function_name(a.add).endswith("Adder.add")


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def is_even(n):
    return True if n == 0 else is_odd(n - 1)


def is_odd(n):
    return False if n == 0 else is_even(n - 1)


def test_recursive_and_self_referencing_functions():
    assert function_key(fib) == function_key(fib)
    assert function_key(is_even) != function_key(is_odd)

    def outer():
        def countdown(n):
            return 0 if n <= 0 else countdown(n - 1)

        return countdown

    assert function_key(outer()) == function_key(outer())
    chain = {}
    for i in range(10):  # deeper than MAX_DEPTH: no error, still deterministic
        chain = {"g": _exec(f"def g(x):\n    return g_prev(x) + {i}\n", g_prev=chain.get("g"))["g"]}
    assert function_key(chain["g"]) == function_key(chain["g"])
    p = functools.partial(fib, 3)
    q = _exec("def q():\n    return p()\n", p=p)["q"]
    assert len(function_key(q)) == 16


def test_function_name_is_sanitised():
    def f():
        pass

    f.__qualname__ = "bad\nname\x00" + "x" * 500
    name = function_name(f)
    assert len(name) <= 200
    assert "\n" not in name and "\x00" not in name
    assert function_name(fib).endswith(".fib")
    assert function_name(functools.partial(fib, 1)).startswith("functools.partial(")


# -- across processes ---------------------------------------------------------------------


def test_equal_across_processes_for_helper_module(tmp_path, monkeypatch):
    module_name = "amorsize_workload_helper"
    (tmp_path / f"{module_name}.py").write_text(HELPER_SOURCE)
    script = (
        "import json\n"
        "from amorsize_dask.target.workload import function_key\n"
        f"from {module_name} import CALLABLES\n"
        "print(json.dumps({k: function_key(v) for k, v in CALLABLES.items()}))\n"
    )
    first = json.loads(_run(script, "1", str(tmp_path)))
    second = json.loads(_run(script, "987", str(tmp_path)))
    assert first == second

    monkeypatch.syspath_prepend(str(tmp_path))
    helper = importlib.import_module(module_name)
    try:
        here = {k: function_key(v) for k, v in helper.CALLABLES.items()}
    finally:
        sys.modules.pop(module_name, None)
    assert here == first
    assert len(set(here.values())) == len(here)


def test_equal_across_processes_for_lambda_in_script():
    first = _run(LAMBDA_SCRIPT, "3")
    second = _run(LAMBDA_SCRIPT, "4")
    assert first == second
    namespace = {"__name__": "__main__"}
    exec(compile(LAMBDA_SCRIPT.replace("print(", "keys = ("), "<string>", "exec"), namespace)
    assert " ".join(namespace["keys"]) == first


# -- state that decides the cost (issue 13) -----------------------------------------

STATE_SCRIPT = textwrap.dedent(
    """
    import functools
    import numpy as np
    from amorsize_dask.target.workload import function_key

    def scale(weights, x):
        return float(weights.sum()) * x

    class Model:
        def __init__(self, size):
            self.weights = np.ones(size)
            self.name = "m"

        def predict(self, x):
            return float(self.weights.sum()) + x

    keys = [function_key(functools.partial(scale, np.ones(10))),
            function_key(functools.partial(scale, np.ones(10_000_000))),
            function_key(functools.partial(scale, np.ones(11))),
            function_key(Model(10).predict), function_key(Model(5_000_000).predict),
            function_key(Model(11).predict)]
    print(" ".join(keys))
    """
)


def test_state_that_decides_the_cost_enters_the_workload(tmp_path):
    """partial(scale, small) / partial(scale, huge) and Model(10).predict /
    Model(5_000_000).predict are different workloads; a slightly different size is not."""
    script = tmp_path / "state.py"
    script.write_text(STATE_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    small, huge, small2, m_small, m_huge, m_small2 = proc.stdout.split()
    assert small != huge and m_small != m_huge
    assert small == small2 and m_small == m_small2
    assert len({small, m_small}) == 2


def test_size_signature_is_bounded_and_never_touches_other_objects():
    class Lazy:
        @property
        def shape(self):  # a property of a foreign object must never run
            raise AssertionError("touched")

        nbytes = shape

    assert workload.size_signature(Lazy()) is None
    many = type("Many", (), {})()
    for i in range(1000):
        setattr(many, f"a{i}", np.ones(3))
    assert len(workload.state_signature(many)) == workload.MAX_STATE_ATTRS
    assert workload.size_signature(np.ones((4, 4), dtype=np.float32)) == ("array", "float32", 2, 7)
