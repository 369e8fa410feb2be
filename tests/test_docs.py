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


def _run(args, tmp_path, timeout=120):
    env = dict(os.environ, DASK_AMORSIZE__TRAINING_DIR=str(tmp_path / "training"),
               XDG_CACHE_HOME=os.environ.get("XDG_CACHE_HOME", str(tmp_path / "cache")))
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


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_blocks_run(index, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(PYTHON_BLOCKS[index])
    _run([sys.executable, str(script)], tmp_path)


@pytest.mark.parametrize("index", range(len(CLI_BLOCKS)))
def test_readme_cli_blocks_run(index, tmp_path):
    _run(["bash", "-euo", "pipefail", "-c", CLI_BLOCKS[index]], tmp_path)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_examples_run(example, tmp_path):
    _run([sys.executable, str(example)], tmp_path, timeout=90)
