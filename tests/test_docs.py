"""The README's code and the examples run as written (docs that cannot drift)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)
PYTHON_BLOCKS = [code for lang, code in BLOCKS if lang == "python"]
CLI_BLOCKS = [code for lang, code in BLOCKS if lang == "bash" and code.lstrip().startswith("amorsize-dask")]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _run(args, tmp_path, timeout=120, **environ):
    env = dict(os.environ, DASK_AMORSIZE__TRAINING_DIR=str(tmp_path / "training"),
               XDG_CACHE_HOME=os.environ.get("XDG_CACHE_HOME", str(tmp_path / "cache")), **environ)
    bin_dir = str(pathlib.Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    out = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args} failed:\n{out.stdout}\n{out.stderr}"
    return out


def test_readme_has_the_two_commands_first():
    lang, first = BLOCKS[0]
    lines = first.strip().splitlines()
    assert lang == "bash" and lines[0] == "# run the demo" and lines[2] == "# run the tests"
    assert "amorsize-dask demo" in lines[1] and "pytest" in lines[3]


def _run_leaving_nothing(args, tmp_path, timeout=120):
    """Run ``args``; nothing of its own is left in the temporary directory (a user copying
    a README block or running an example finds no leftovers there; Dask's LocalCluster
    keeps its ``dask-scratch-space``)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    _run(args, tmp_path, timeout=timeout, TMPDIR=str(scratch))
    assert [p.name for p in scratch.iterdir() if p.name != "dask-scratch-space"] == []


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_blocks_run(index, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(PYTHON_BLOCKS[index])
    _run_leaving_nothing([sys.executable, str(script)], tmp_path)


@pytest.mark.parametrize("index", range(len(CLI_BLOCKS)))
def test_readme_cli_blocks_run(index, tmp_path):
    _run_leaving_nothing(["bash", "-euo", "pipefail", "-c", CLI_BLOCKS[index]], tmp_path)


def test_readme_text_blocks_are_run_by_an_example():
    """Shell lines that start servers (``text`` blocks) are run by an example instead."""
    sources = "\n".join(e.read_text() for e in EXAMPLES)
    for lang, code in BLOCKS:
        if lang == "text":
            for line in code.strip().splitlines():
                words = line.split()
                assert words[:2] == ["dask", "scheduler"] and "--preload amorsize_dask.plugin" in line
                assert "--preload amorsize_dask.plugin --amorsize-dir" in sources


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_examples_run(example, tmp_path):
    """Each example runs and leaves nothing of its own in the temporary directory."""
    _run_leaving_nothing([sys.executable, str(example)], tmp_path, timeout=90)


def test_library_never_prints_and_logs_under_one_name():
    """Output is the caller's: the library logs to ``amorsize_dask``; only the CLI and
    the benchmarks print."""
    import ast

    package = ROOT / "amorsize_dask"
    for path in package.rglob("*.py"):
        rel = path.relative_to(package).as_posix()
        if rel == "cli.py" or rel.startswith("bench/"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                raise AssertionError(f"{rel}:{node.lineno} calls print()")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "getLogger":
                args = [a.value for a in node.args if isinstance(a, ast.Constant)]
                assert args == ["amorsize_dask"], f"{rel}:{node.lineno} logs under {args}"
