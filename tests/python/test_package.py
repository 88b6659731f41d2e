"""The package as a user meets it: constants, docstrings for help(), type stubs that
match the code, the files a wheel must ship."""
import ast
import inspect
import os
import pathlib
import re
import pydoc
import subprocess
import sys

import pytest

import tlsrekey
from tlsrekey import _tlsrekey

PKG_DIR = pathlib.Path(tlsrekey.__file__).parent
SOURCE_ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_key_update_type_values_are_openssls():
    KUT = tlsrekey.KeyUpdateType
    assert [(m.name, int(m)) for m in KUT] == [("NONE", -1), ("NOT_REQUESTED", 0),
                                              ("REQUESTED", 1)]
    assert tlsrekey.KEY_UPDATE_NONE is KUT.NONE
    assert tlsrekey.KEY_UPDATE_NOT_REQUESTED is KUT.NOT_REQUESTED
    assert tlsrekey.KEY_UPDATE_REQUESTED is KUT.REQUESTED
    assert KUT.__module__ == "tlsrekey"
    assert repr(KUT.REQUESTED) == "<KeyUpdateType.REQUESTED: 1>"


def test_version_strings():
    assert tlsrekey.__version__ == "0.1.0"
    assert tlsrekey.OPENSSL_VERSION.startswith("OpenSSL 3.")


@pytest.mark.skipif(not (SOURCE_ROOT / "pyproject.toml").exists(),
                    reason="runs from a source tree only (reads pyproject.toml)")
def test_version_matches_pyproject():
    text = (SOURCE_ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:     # Python 3.10: the [project] table's version line
        section = text.split("[project]", 1)[1].split("\n[", 1)[0]
        version = re.search(r'^version\s*=\s*"([^"]+)"', section, re.M).group(1)
    else:
        version = tomllib.loads(text)["project"]["version"]
    assert version == tlsrekey.__version__


def public_members(cls):
    return [n for n in dir(cls) if not n.startswith("_")]


def test_every_public_name_has_a_docstring():
    missing = []
    for name in tlsrekey.__all__:
        obj = getattr(tlsrekey, name)
        if isinstance(obj, (str, int)):
            continue                      # constants: documented with their type
        if not (obj.__doc__ or "").strip():
            missing.append(name)
    for cls in (tlsrekey.Connection, tlsrekey.Context):
        for name in public_members(cls):
            if not (getattr(cls, name).__doc__ or "").strip():
                missing.append(f"{cls.__name__}.{name}")
    assert missing == []


def test_help_explains_the_rekey_calls():
    text = pydoc.render_doc(tlsrekey.Connection, renderer=pydoc.plaintext)
    for phrase in ("key_update(updatetype=KEY_UPDATE_NOT_REQUESTED, now=False)",
                   "get_key_update_type", "renegotiate_abbreviated",
                   "renegotiate_pending", "write(b\"\")"):
        assert phrase in text
    assert "Context.client" in pydoc.render_doc(tlsrekey, renderer=pydoc.plaintext)


def test_stub_files_ship_with_the_package():
    for name in ("py.typed", "__init__.pyi", "_tlsrekey.pyi"):
        assert (PKG_DIR / name).is_file(), name


def stub_tree(name):
    return ast.parse((PKG_DIR / name).read_text())


def stub_names(tree):
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def stub_params(fn):
    a = fn.args
    params = [(p.arg, "positional") for p in a.posonlyargs + a.args]
    params += [(p.arg, "keyword") for p in a.kwonlyargs]
    return [p for p in params if p[0] not in ("self", "cls")]


def runtime_params(fn):
    kinds = {inspect.Parameter.KEYWORD_ONLY: "keyword",
             inspect.Parameter.VAR_KEYWORD: "var"}
    return [(p.name, kinds.get(p.kind, "positional"))
            for p in inspect.signature(fn).parameters.values()]


def test_package_stub_names_match_the_package():
    assert set(tlsrekey.__all__) <= stub_names(stub_tree("__init__.pyi"))


def test_package_stub_signatures_match_the_code():
    tree = stub_tree("__init__.pyi")
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    context = next(n for n in tree.body if isinstance(n, ast.ClassDef) and
                   n.name == "Context")
    methods = {n.name: n for n in context.body if isinstance(n, ast.FunctionDef)}
    for name in ("client", "server"):
        assert stub_params(methods[name]) == runtime_params(getattr(tlsrekey.Context,
                                                                    name)), name
    # pair(**options): the stub spells the options out; the code checks them.
    stub = stub_params(funcs["pair"])
    runtime = [p for p in runtime_params(tlsrekey.pair) if p[1] != "var"]
    assert stub[:len(runtime)] == runtime
    known = tlsrekey._PAIR_BOTH | tlsrekey._PAIR_SERVER | tlsrekey._PAIR_CLIENT
    assert {option for option, _ in stub[len(runtime):]} == known


def test_extension_stub_lists_every_method_and_property():
    tree = stub_tree("_tlsrekey.pyi")
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for cls in (_tlsrekey.Connection, _tlsrekey.Context):
        in_stub = {n.name for n in classes[cls.__name__].body
                   if isinstance(n, ast.FunctionDef)}
        at_runtime = {n for n in vars(cls) if not n.startswith("__") or
                      n in ("__enter__", "__exit__")}
        assert at_runtime - in_stub == set(), cls.__name__


def package_paths(PYTHONPATH=False):
    """MYPYPATH (and PYTHONPATH) naming the package's directory when it is a source
    tree; nothing for an installed package, which mypy and Python find by themselves
    (and mypy refuses site-packages on MYPYPATH)."""
    where = PKG_DIR.parent
    if where.name == "site-packages":
        return {}
    paths = {"MYPYPATH": str(where)}
    if PYTHONPATH:
        paths["PYTHONPATH"] = str(where)
    return paths


def helper_env(**extra):
    """The environment for mypy. Under the sanitizer run it keeps the preloaded ASan
    runtime (stubtest imports our sanitized extension) but checks no leaks: mypy's
    own are not ours to report."""
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] += ":detect_leaks=0"
    env.update(extra)
    return env


def mypy_available():
    try:
        import mypy.stubtest  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.skipif(not mypy_available(),
                    reason="mypy is not installed (the project venv has it)")
def test_extension_stub_passes_stubtest(tmp_path):
    env = helper_env(**package_paths(PYTHONPATH=True))
    proc = subprocess.run([sys.executable, "-m", "mypy.stubtest", "tlsrekey._tlsrekey"],
                          cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(not mypy_available(),
                    reason="mypy is not installed (the project venv has it)")
def test_typical_use_type_checks(tmp_path):
    sample = tmp_path / "use.py"
    sample.write_text(
        "import tlsrekey\n"
        "client, server = tlsrekey.pair(max_version='TLSv1.2')\n"
        "client.key_update(tlsrekey.KEY_UPDATE_REQUESTED, now=True)\n"
        "t: tlsrekey.KeyUpdateType = client.get_key_update_type()\n"
        "n: int = client.write(b'x')\n"
        "data: bytes = server.read()\n"
        "ctx = tlsrekey.Context.client('ca.pem', alpn=['h2'])\n"
        "conn = ctx.memory('localhost')\n"
        "stats: dict[str, int] = conn.stats\n"
        "try:\n"
        "    conn.read()\n"
        "except tlsrekey.CertificateError as e:\n"
        "    code: int = e.verify_code\n")
    env = helper_env(**package_paths())
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir",
                           str(tmp_path / "cache"), "--follow-imports=silent",
                           str(sample)],
                          cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(not (SOURCE_ROOT / ".git").exists(),
                    reason="runs in a git checkout only (asks git for the tracked files)")
def test_no_tracked_file_names_a_path_of_one_machine():
    """The tree works wherever it is cloned: no tracked file names this checkout's
    own location, a home directory or an absolute file:// URL."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=SOURCE_ROOT, check=True,
                           capture_output=True).stdout.split(b"\0")
    # this checkout's location, as a path of its own (not the end of a longer one).
    # Inside the other Debian's root the checkout sits where scripts/other-debian.sh
    # put it, a place the tree itself chooses and so may name.
    here = re.compile(rb"(?<![\w./-])" + re.escape(str(SOURCE_ROOT).encode()) +
                      rb"(?![\w.-])")
    if os.environ.get("TRK_PLATFORM_INNER"):
        here = re.compile(rb"(?!)")
    # (assembled here, so that this file does not name them itself)
    slash = b"/"
    patterns = [re.compile(re.escape(b"file:" + slash * 3)),
                re.compile(re.escape(slash + b"home" + slash) + rb"[a-z_]"),
                re.compile(rb"(?<![\w.-])" + re.escape(slash + b"root" + slash))]
    found = []
    for name in filter(None, files):
        path = SOURCE_ROOT / name.decode()
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue                     # binary: a fuzz input, not text
        for i, line in enumerate(data.splitlines(), 1):
            if here.search(line) or any(p.search(line) for p in patterns):
                found.append("%s:%d: %s" % (name.decode(), i, line.decode(errors="replace")[:100]))
    assert not found, "\n".join(found)


def test_the_licence_is_mit_everywhere_it_is_stated():
    """LICENSE, the Python package's classifiers and the rockspec say the same."""
    assert (SOURCE_ROOT / "LICENSE").read_text().startswith("MIT License")
    assert re.search(r'^license\s*=\s*"MIT"$', (SOURCE_ROOT / "pyproject.toml").read_text(),
                     re.M)
    rockspec = next((SOURCE_ROOT / "rockspec").glob("*.rockspec")).read_text()
    assert re.search(r'license\s*=\s*"MIT"', rockspec)
