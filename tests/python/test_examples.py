"""examples/: every Python example runs to completion by itself, in bounded time, and
type-checks with mypy --strict against the package's stubs (which checks the stubs
as much as the examples), as do tlsrekey.asyncio and tlsrekey.console. The Lua examples are run by
tests/lua/examples_spec.lua; every file in examples/ is one or the other."""
import os
import pathlib
import subprocess
import sys

import pytest

import tlsrekey

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PACKAGE_PARENT = pathlib.Path(tlsrekey.__file__).resolve().parents[1]
LIMIT = 60          # seconds per example; each finishes in well under a few seconds

PY_EXAMPLES = sorted(EXAMPLES.glob("*.py"))


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = str(PACKAGE_PARENT)
    e["PYTHONUNBUFFERED"] = "1"
    return e


def test_examples_exist_in_both_languages():
    names = {p.name for p in EXAMPLES.iterdir() if p.is_file()}
    unknown = {n for n in names if not n.endswith((".py", ".lua"))}
    assert unknown == set(), "examples/ holds files no test runs: %s" % sorted(unknown)
    py = {n[:-3] for n in names if n.endswith(".py")}
    lua = {n[:-4] for n in names if n.endswith(".lua")}
    # the same programs in both languages, except asyncio (Lua: coroutine_server)
    assert py - {"asyncio_stream"} <= lua
    assert lua - {"coroutine_server"} <= py


@pytest.mark.parametrize("path", PY_EXAMPLES, ids=[p.stem for p in PY_EXAMPLES])
def test_example_runs(path, tmp_path):
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=LIMIT)
    assert proc.returncode == 0, "%s failed:\n%s%s" % (path.name, proc.stdout, proc.stderr)
    assert proc.stdout.strip(), "%s printed nothing" % path.name


def mypy_available():
    try:
        import mypy.api  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not mypy_available(), reason="mypy is not installed (make deps)")
def test_examples_pass_mypy_strict(tmp_path):
    e = env()
    files = [str(p) for p in PY_EXAMPLES]
    # An installed package (a venv's site-packages) is found by mypy as it is, typed
    # (py.typed); a source tree's must be named, and then its pure-Python modules,
    # the examples' neighbours, are checked too (mypy takes no file from
    # site-packages: that would make it a source root).
    if PACKAGE_PARENT.name != "site-packages":
        e["MYPYPATH"] = str(PACKAGE_PARENT)
        files += [str(PACKAGE_PARENT / "tlsrekey" / "asyncio.py"),
                  str(PACKAGE_PARENT / "tlsrekey" / "console.py")]
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
         "--no-error-summary", *files],
        cwd=tmp_path, env=e, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
