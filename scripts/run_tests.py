#!/usr/bin/env python3
"""Runs every tlsrekey test suite for `make test` and sums them up.

Suites, in order: the C core tests, pytest, busted, the interop matrix; the same
under AddressSanitizer + UndefinedBehaviorSanitizer with leak detection; the C tests
under valgrind, the short leak loops and the bounded fuzzing run (mk/valgrind.mk,
mk/soak.mk, mk/fuzz.mk); then the packaging
checks (pip install ., the sdist, the wheel, the Lua rock). Each suite builds what it
needs first (a make target), so one broken part does not hide the others' results.
Every suite is run and counted even when an earlier one failed.

The last line printed is `N passed, N failed` (", N skipped" when some were), summed
over all suites. The exit status is 1 if anything failed, a suite could not run, or a
suite collected no tests.

Only the standard library is used: this runs with the users' python3, not the venv.
Logs and junit files go to build/results/.
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "build", "results")
VPY = os.path.join(ROOT, ".venv", "bin", "python")
LUA = os.environ.get("LUA", "lua5.4")
BUSTED = os.environ.get("BUSTED", "/usr/bin/busted")

# Wall-clock limits, so that a hung test cannot eat CI's 90 minutes.
LIMIT_C = 300
LIMIT_SUITE = 1200
LIMIT_SAN_SUITE = 1800
LIMIT_PACKAGING = 600

# What makes a sanitizer report (ASan's "WARNING: ... failed to allocate", which
# allocator_may_return_null prints before returning NULL, is not one).
SAN_REPORT = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
    r"SUMMARY: UndefinedBehaviorSanitizer"
)
COUNT_LINE = re.compile(r"^\s*(?:\w+:\s*)?(\d+) passed, (\d+) failed", re.M)


class Result:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.seconds = 0.0
        self.problems = []   # why the suite counts failures beyond its own tests

    def problem(self, text):
        """A failure of the suite itself (did not build, crashed, sanitizer report,
        collected nothing): counted as one failed test."""
        self.problems.append(text)
        self.failed += 1


def say(text=""):
    print(text, flush=True)


def banner(text):
    say()
    say("=" * 8 + " " + text + " " + "=" * max(3, 70 - len(text)))


def run(cmd, log_path, env=None, cwd=ROOT, limit=LIMIT_SUITE, echo=True):
    """Runs cmd with no stdin, in its own process group, copying its output to the
    console (if echo) and to log_path. Returns (exit status, output); a run past
    `limit` seconds is killed and returns status None."""
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True)
        out = []

        def copy():
            for line in iter(proc.stdout.readline, b""):
                out.append(line)
                log.write(line)
                if echo:
                    sys.stdout.buffer.write(line)
                    sys.stdout.flush()

        # A thread copies the output, so that a process a test left behind holding
        # the pipe open cannot keep us waiting once the command itself has ended.
        reader = threading.Thread(target=copy, daemon=True)
        reader.start()
        try:
            status = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            status = None
        # Whatever is left of its process group (a peer a test forgot) goes too.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        reader.join(timeout=10)
        note = None
        if status is None:
            note = "*** killed after %d s ***" % limit
        elif reader.is_alive():
            note = "*** output still held open by a leftover process; stopped reading ***"
        text = b"".join(out).decode("utf-8", "replace")
        if note:
            log.write(("\n" + note + "\n").encode())
            say(note)
        return status, text


def make(target, res, log_path):
    """Builds a make target for a suite; on failure the suite cannot run."""
    # -s: the first build already showed its commands; errors still show.
    status, _ = run(["make", "-s", "--no-print-directory", target], log_path,
                    limit=LIMIT_SUITE)
    if status != 0:
        res.problem("`make %s` failed (see %s)" % (target, rel(log_path)))
        return False
    return True


def rel(path):
    return os.path.relpath(path, ROOT)


# --- sanitizer environment ----------------------------------------------------

def sanitizer_env(report_dir, lsan_supp=None, preload=True):
    """The environment of a sanitized run. Reports go to files in report_dir (one per
    process, children included), which the suite then checks, as well as the log."""
    env = dict(os.environ)
    shutil.rmtree(report_dir, ignore_errors=True)
    os.makedirs(report_dir)
    # allocator_may_return_null: both interpreters turn a failed malloc into an error
    # ("not enough memory", MemoryError), and tests ask for absurd sizes on purpose.
    asan = ["detect_leaks=1", "abort_on_error=0", "halt_on_error=1",
            "allocator_may_return_null=1",
            "detect_stack_use_after_return=1", "check_initialization_order=1",
            "strict_init_order=1", "log_path=" + os.path.join(report_dir, "asan")]
    # More, from the caller: e.g. TRK_ASAN_OPTIONS=fast_unwind_on_malloc=0 for whole
    # allocation stacks through libssl/libcrypto (built without frame pointers), at
    # about 15 times the run time.
    asan += [o for o in os.environ.get("TRK_ASAN_OPTIONS", "").split(":") if o]
    env["ASAN_OPTIONS"] = ":".join(asan)
    env["UBSAN_OPTIONS"] = ":".join([
        "print_stacktrace=1", "halt_on_error=1",
        "log_path=" + os.path.join(report_dir, "ubsan")])
    # exitcode=0: a leak found at exit does not change the exit status. Every leak
    # report is a file in report_dir, which check_sanitizer_reports judges (and a
    # distribution's interpreter leaks of its own at exit: a console test that
    # checks its child's exit status would otherwise fail on those).
    lsan = ["report_objects=1", "exitcode=0"]
    if lsan_supp:
        lsan.append("suppressions=" + os.path.join(ROOT, lsan_supp))
        lsan.append("print_suppressions=1")
    env["LSAN_OPTIONS"] = ":".join(lsan)
    if preload:
        # The interpreters are not instrumented: the runtimes must be loaded first.
        libs = [subprocess.check_output(["gcc", "-print-file-name=" + lib],
                                        text=True).strip()
                for lib in ("libasan.so", "libubsan.so")]
        env["LD_PRELOAD"] = " ".join(libs)
    return env


# A leak record of the interpreter's own: every frame above the allocator is in the
# python binary or libpython. A distribution's python (Debian 13's 3.13) is built
# without frame pointers, so LeakSanitizer's stacks stop one frame in and name no
# function a suppression could match; and a suppression of the whole binary would
# also hide every leak made through tlsrekey, whose stacks end in the interpreter.
# A leak that tlsrekey, OpenSSL or any other library allocated has a frame of theirs.
INTERPRETER_MODULE = re.compile(r"^(python3(\.\d+)?|libpython3\.\d+[^/]*)$")
FRAME = re.compile(r"^\s+#(\d+) 0x[0-9a-f]+ (?:in (\S+) )?(.*)$")
# A frame symbolized to a source line of CPython's own tree (an interpreter built
# with its debug information, as pyenv's are): "Modules/_tracemalloc.c:260".
INTERPRETER_SOURCE = re.compile(r"^(Modules|Objects|Python|Parser|Include)/[\w./-]+:\d+")


def interpreter_only(block):
    frames = [FRAME.match(l) for l in block.splitlines()]
    frames = [m for m in frames if m and m.group(1) != "0"]
    if not frames:
        return False
    for m in frames:
        where = re.search(r"\(([^()+]+)\+0x[0-9a-f]+\)", m.group(3))
        if where and INTERPRETER_MODULE.match(os.path.basename(where.group(1))):
            continue
        if not where and INTERPRETER_SOURCE.match(m.group(3)):
            continue
        return False
    return True


def leaks_beyond_interpreter(text):
    """The report less the interpreter's own leak records; "" if nothing is left.
    Returns (what is left, how many records were dropped)."""
    if "ERROR: LeakSanitizer" not in text or "ERROR: AddressSanitizer" in text:
        return text, 0
    blocks = re.split(r"\n(?=(?:Direct|Indirect) leak of )", text)
    kept = [b for b in blocks[1:] if not interpreter_only(b)]
    dropped = len(blocks) - 1 - len(kept)
    if not kept and not re.search(r"runtime error:|UndefinedBehaviorSanitizer", text):
        return "", dropped
    return text, dropped


def check_sanitizer_reports(res, report_dir, output, odd_exit=None):
    """Any sanitizer report fails the suite. ASan and LSan write theirs to files in
    report_dir (children's too); UBSan ignores log_path when linked with ASan and
    writes to stderr, which is the output. odd_exit: the runner's complaint about an
    exit status that its test report does not explain, counted only when no sanitizer
    report explains it either."""
    found = False
    for path in sorted(glob.glob(os.path.join(report_dir, "*"))):
        with open(path, errors="replace") as f:
            text = f.read()
        text, dropped = leaks_beyond_interpreter(text)
        if dropped and not text:
            say("(%s: %d leak record(s) of the interpreter's own, no tlsrekey, OpenSSL "
                "or other frame in them: not counted)" % (rel(path), dropped))
        if SAN_REPORT.search(text):
            say("--- sanitizer report %s ---" % rel(path))
            say(text[:20000])
            res.problem("sanitizer report in %s" % rel(path))
            found = True
            if "LeakSanitizer" in text and "fast_unwind_on_malloc=0" not in \
                    os.environ.get("TRK_ASAN_OPTIONS", ""):
                say("(stacks stop at libssl/libcrypto? rerun this suite with "
                    "TRK_ASAN_OPTIONS=fast_unwind_on_malloc=0 for whole stacks)")
    if SAN_REPORT.search(output):
        res.problem("sanitizer report in the output (see the log)")
        found = True
    if odd_exit and not found:
        res.problem(odd_exit)


# --- counting -----------------------------------------------------------------

def count_junit(res, path):
    """Adds a junit XML file's counts (pytest's or busted's); False if unreadable.
    Counted from the elements, not the totals: busted reports a spec file that
    fails to load as an <error> of the suite itself, outside any test case."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        res.problem("no readable junit report %s (%s)" % (rel(path), e))
        return False
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    failing = []
    for suite in suites:
        for child in suite:
            if child.tag in ("failure", "error"):
                failing.append(("(loading)", suite.get("name", ""), child))
            elif child.tag == "testcase":
                bad = child.find("failure")
                if bad is None:
                    bad = child.find("error")
                if bad is not None:
                    failing.append((child.get("classname"), child.get("name"), bad))
                elif child.find("skipped") is not None:
                    res.skipped += 1
                else:
                    res.passed += 1
    res.failed += len(failing)
    if failing:
        say("--- failing in %s ---" % rel(path))
        for where, name, bad in failing[:50]:
            first = (bad.get("message") or bad.text or "").strip().splitlines()
            say("  %s :: %s\n      %s" % (where, name, first[0][:200] if first else ""))
    return True


def count_c_tests(res, binaries, env, log_path, limit):
    """Each C test program prints lines and ends with `N passed, N failed`."""
    if not binaries:
        res.problem("no C test programs (tests/c/test_*.c)")
        return ""
    outputs = []
    for b in binaries:
        status, out = run([b], log_path, env=env, limit=limit)
        outputs.append(out)
        found = COUNT_LINE.findall(out)
        if status is None:
            res.problem("%s timed out" % rel(b))
        elif not found:
            res.problem("%s exited with status %d before its 'N passed, N failed' line"
                        % (rel(b), status))
        if found:
            p, f = map(int, found[-1])
            res.passed += p
            res.failed += f
            if status not in (0, None) and f == 0:
                res.problem("%s exited with status %d after '%d passed, 0 failed'"
                            % (rel(b), status, p))
    return "".join(outputs)


def c_binaries(directory):
    names = sorted(os.path.basename(p)[:-2] for p in glob.glob("tests/c/test_*.c"))
    return [os.path.join(ROOT, directory, n) for n in names]


# --- the suites ---------------------------------------------------------------

def suite_c(res, log):
    if make("build-c", res, log):
        count_c_tests(res, c_binaries("build/c"), None, log, LIMIT_C)


def pytest(res, log, pythonpath, xml, env=None, limit=LIMIT_SUITE, capture="fd",
           where="tests/python", extra=()):
    """Runs pytest and counts its junit report. Returns (output, odd_exit): odd_exit
    is a complaint about an exit status the report does not explain, left to the
    caller (a sanitized run may explain it by a sanitizer report)."""
    env = dict(env or os.environ)
    env["PYTHONPATH"] = pythonpath
    if os.path.exists(xml):
        os.remove(xml)
    status, out = run([VPY, "-m", "pytest", where, "-q", "-p", "no:cacheprovider",
                       "--capture=" + capture, "--junitxml=" + xml] + list(extra),
                      log, env=env, limit=limit)
    if status is None:
        res.problem("pytest timed out")
    if status == 5:
        res.problem("pytest collected no tests")
    elif status not in (0, 1, None):
        res.problem("pytest exited with status %s (internal error or crash)" % status)
    before = res.failed
    if os.path.exists(xml) or status is not None:
        count_junit(res, xml)
    odd_exit = None
    if status == 1 and res.failed == before:
        odd_exit = "pytest exited 1 but its report shows no failing test"
    if res.passed + res.failed == 0:
        res.problem("pytest ran no test")
    return out, odd_exit


def plain_pytest(res, log, where, name):
    if make("build-python", res, log):
        _, odd_exit = pytest(res, log, "python", os.path.join(RESULTS, name + ".xml"),
                             where=where)
        if odd_exit:
            res.problem(odd_exit)


def suite_python(res, log):
    plain_pytest(res, log, "tests/python", "python")


def suite_interop(res, log):
    plain_pytest(res, log, "tests/interop", "interop")


def busted(res, log, cpath, xml, env=None, limit=LIMIT_SUITE):
    env = dict(env or os.environ)
    env["LUA_CPATH"] = cpath + ";;"
    env["LUA_PATH"] = "lua/?.lua;tests/lua/?.lua;;"
    if os.path.exists(xml):
        os.remove(xml)
    if not glob.glob("tests/lua/*_spec.lua"):
        res.problem("no busted specs (tests/lua/*_spec.lua)")
        return "", None
    status, out = run([LUA, BUSTED, "-o", "junit", "-Xoutput", xml, "tests/lua"],
                      log, env=env, limit=limit)
    if status is None:
        res.problem("busted timed out")
    before = res.failed
    if status is not None:
        count_junit(res, xml)
    # busted exits with the number of failures and errors.
    odd_exit = None
    if status not in (0, None) and res.failed == before:
        odd_exit = "busted exited with status %d but its report shows no failure" % status
    if res.passed + res.failed == 0:
        res.problem("busted ran no test")
    return out, odd_exit


def suite_lua(res, log):
    if make("build-lua", res, log):
        _, odd_exit = busted(res, log, "build/lua/?.so", os.path.join(RESULTS, "lua.xml"))
        if odd_exit:
            res.problem(odd_exit)


def suite_c_asan(res, log):
    if make("build-asan-c", res, log):
        reports = os.path.join(RESULTS, "asan-c")
        env = sanitizer_env(reports, preload=False)
        out = count_c_tests(res, c_binaries("build/asan/c"), env, log, LIMIT_C * 3)
        check_sanitizer_reports(res, reports, out)


def check_tsan_reports(res, report_dir, output):
    """Any ThreadSanitizer report (a file in report_dir, or in the output) fails the
    suite."""
    for path in sorted(glob.glob(os.path.join(report_dir, "*"))):
        with open(path, errors="replace") as f:
            text = f.read()
        if "ThreadSanitizer" in text:
            say("--- ThreadSanitizer report %s ---" % rel(path))
            say(text[:20000])
            res.problem("ThreadSanitizer report in %s" % rel(path))
    if "WARNING: ThreadSanitizer" in output:
        res.problem("ThreadSanitizer report in the output (see the log)")


def suite_c_tsan(res, log):
    """The C tests under ThreadSanitizer: test_threads shares contexts between eight
    threads; the others run servers and relays in threads. Any report fails."""
    if make("build-tsan-c", res, log):
        reports = os.path.join(RESULTS, "tsan-c")
        shutil.rmtree(reports, ignore_errors=True)
        os.makedirs(reports)
        env = dict(os.environ)
        env["TSAN_OPTIONS"] = ":".join(["halt_on_error=0", "second_deadlock_stack=1",
                                        "log_path=" + os.path.join(reports, "tsan")])
        out = count_c_tests(res, c_binaries("build/tsan/c"), env, log, LIMIT_C * 3)
        check_tsan_reports(res, reports, out)


def suite_python_tsan(res, log):
    """The threaded Python tests (tests/python/test_threads.py) against the extension
    built with ThreadSanitizer, libtsan preloaded into the (uninstrumented)
    interpreter: the core and the shim are checked, the GIL and the locks are seen
    through TSan's pthread interceptors. The fork case is left out: TSan does not
    support fork() in a process with threads. Any report fails."""
    if not make("build-tsan-python", res, log):
        return
    reports = os.path.join(RESULTS, "tsan-python")
    shutil.rmtree(reports, ignore_errors=True)
    os.makedirs(reports)
    env = dict(os.environ)
    env["LD_PRELOAD"] = subprocess.check_output(
        ["gcc", "-print-file-name=libtsan.so"], text=True).strip()
    # exitcode=0: the reports are files, judged below (TSan's exit status 66 would
    # read as pytest crashing)
    env["TSAN_OPTIONS"] = ":".join([
        "halt_on_error=0", "exitcode=0", "log_path=" + os.path.join(reports, "tsan"),
        "suppressions=" + os.path.join(ROOT, "tests", "sanitizers", "tsan-openssl.supp")])
    probe_env = dict(env, PYTHONPATH="build/tsan/python")
    _, out = run([VPY, "-c", "import tlsrekey; print(tlsrekey._tlsrekey.__file__); "
                  "print(any('libtsan' in l for l in open('/proc/self/maps')))"],
                 log, env=probe_env, limit=120, echo=False)
    if os.path.join("build", "tsan", "python") not in out or "True" not in out:
        res.problem("the ThreadSanitizer run does not load build/tsan/python with "
                    "libtsan: %s" % tail(out, 3))
        return
    out, odd_exit = pytest(res, log, "build/tsan/python",
                           os.path.join(RESULTS, "python-tsan.xml"), env=env,
                           limit=LIMIT_SAN_SUITE, capture="sys",
                           where="tests/python/test_threads.py", extra=["-k", "not fork"])
    if odd_exit:
        res.problem(odd_exit)
    check_tsan_reports(res, reports, out)


def python_asan_env(report_dir):
    env = sanitizer_env(report_dir, "tests/sanitizers/lsan-python.supp")
    # pymalloc keeps objects in its own mmap'ed arenas, which LeakSanitizer does
    # not scan: memory held only by Python objects would look leaked. With the
    # system allocator every object is a malloc block LSan can follow.
    env["PYTHONMALLOC"] = "malloc"
    return env


# Proves the sanitized Python run is what it claims: it imports the ASan build, and
# a leak made in it (4242 bytes from libc's malloc, the pointer dropped) is reported.
CANARY = ("import ctypes, tlsrekey; print(tlsrekey._tlsrekey.__file__); "
          "ctypes.CDLL(None).malloc(4242)")


def check_python_asan_setup(res, log):
    reports = os.path.join(RESULTS, "asan-canary")
    env = python_asan_env(reports)
    env["PYTHONPATH"] = "build/asan/python"
    _, out = run([VPY, "-c", CANARY], log, env=env, limit=120, echo=False)
    text = ""
    for path in glob.glob(os.path.join(reports, "*")):
        with open(path, errors="replace") as f:
            text += f.read()
    ok = True
    if os.path.join(ROOT, "build", "asan", "python", "tlsrekey") not in out:
        res.problem("the sanitized run does not import build/asan/python: %s" % tail(out, 3))
        ok = False
    if "Direct leak of 4242 byte(s)" not in text:
        res.problem("LeakSanitizer missed a deliberate leak: leak detection is not working")
        ok = False
    if ok:
        say("sanitizer setup: imports build/asan/python; a deliberate leak is reported")


def sanitized_pytest(res, log, where, name, extra=()):
    reports = os.path.join(RESULTS, "asan-" + name)
    env = python_asan_env(reports)
    # --capture=sys: pytest captures Python's sys.stdout/stderr only, so a UBSan
    # report written to file descriptor 2 reaches the log even if it kills pytest.
    out, odd_exit = pytest(res, log, "build/asan/python",
                           os.path.join(RESULTS, name + "-asan.xml"), env=env,
                           limit=LIMIT_SAN_SUITE, capture="sys", where=where, extra=extra)
    check_sanitizer_reports(res, reports, out, odd_exit)


def suite_python_asan(res, log):
    if make("build-asan-python", res, log):
        check_python_asan_setup(res, log)
        sanitized_pytest(res, log, "tests/python", "python")


def suite_interop_asan(res, log):
    """The interop matrix against the ASan build, less the pyOpenSSL peer: it runs in
    our process, and cffi and cryptography's Rust module keep allocations for the
    life of the process that LSan reports at exit. They are neither the interpreter
    nor tlsrekey, so they are not suppressed; that peer's cases run unsanitized in
    the interop suite. The other peers are child processes, started without the
    sanitizer runtime by the harness."""
    if make("build-asan-python", res, log):
        sanitized_pytest(res, log, "tests/interop", "interop", ["-k", "not pyOpenSSL"])


def suite_lua_asan(res, log):
    if make("build-asan-lua", res, log):
        reports = os.path.join(RESULTS, "asan-lua")
        env = sanitizer_env(reports, "tests/sanitizers/lsan-lua.supp")
        # lua_close() unloads tlsrekey.core before LSan looks: keep it loaded so
        # leak reports can name its frames (tests/sanitizers/nodlclose.c).
        env["LD_PRELOAD"] += " " + os.path.join(ROOT, "build", "asan", "nodlclose.so")
        out, odd_exit = busted(res, log, "build/asan/lua/?.so",
                               os.path.join(RESULTS, "lua-asan.xml"),
                               env=env, limit=LIMIT_SAN_SUITE)
        check_sanitizer_reports(res, reports, out, odd_exit)


def one_check(res, log, cmd, label, limit):
    """A command whose exit status is one test."""
    status, _ = run(cmd, log, limit=limit)
    if status == 0:
        say("ok %s" % label)
        res.passed += 1
    else:
        say("FAILED %s (exit status %s)" % (label, status))
        res.failed += 1


def suite_valgrind(res, log):
    """mk/valgrind.mk: each C test program under memcheck; one check per program
    (its line `valgrind: NAME clean (...)` or `valgrind: NAME FAILED (...)`)."""
    status, out = run(["make", "-s", "--no-print-directory", "-j2", "valgrind"], log,
                      limit=LIMIT_SUITE)
    clean = re.findall(r"^valgrind: (\S+) clean", out, re.M)
    failed = re.findall(r"^valgrind: (\S+) FAILED", out, re.M)
    res.passed += len(clean)
    res.failed += len(failed)
    if status != 0 and not failed:
        res.problem("make valgrind exited with status %s" % status)
    if not clean and not failed and status == 0:
        res.problem("make valgrind ran no program")


def suite_leaks(res, log):
    """The short leak loops of mk/soak.mk: create/handshake/rekey/close cycles and
    error paths in Python and in Lua, failing on resident-set growth."""
    one_check(res, log, ["make", "-s", "--no-print-directory", "soak-short"],
              "leak loops (make soak-short)", LIMIT_SUITE)


def suite_fuzz(res, log):
    """The bounded libFuzzer run of mk/fuzz.mk: every saved input replayed, then
    FUZZ_SHORT_SECONDS of mutation under ASan+UBSan."""
    one_check(res, log, ["make", "-s", "--no-print-directory", "fuzz-short"],
              "fuzzing (make fuzz-short)", LIMIT_SUITE)


# What a user would type after installing: a key update both ways.
IMPORT_CHECK = r"""
import os, sys, tlsrekey
where = os.path.dirname(tlsrekey.__file__)
assert "site-packages" in where, where
c, s = tlsrekey.pair()
c.key_update(tlsrekey.KEY_UPDATE_REQUESTED)
c.write(b"hi"); assert s.read() == b"hi"
s.write(b"ok"); assert c.read() == b"ok"
st = c.stats
assert st["key_updates_sent"] >= 1 and st["key_updates_received"] >= 1, st
for f in sys.argv[1:]:
    assert os.path.exists(os.path.join(where, f)), "not installed: " + f
print("imported", tlsrekey.__file__, c.version, "key updates sent/received:",
      st["key_updates_sent"], st["key_updates_received"])
"""


def clean_env():
    env = dict(os.environ)
    for k in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_PRELOAD"):
        env.pop(k, None)
    return env


def install_and_import(res, log, what, label, work):
    """In a fresh venv under `work`: pip install `what`, then run IMPORT_CHECK from
    a directory outside the source tree. One packaging test."""
    venv = os.path.join(work, "venv-" + re.sub(r"\W+", "-", label).strip("-"))
    env = clean_env()
    py = os.path.join(venv, "bin", "python")
    extra = [f for f in ("py.typed", "__init__.pyi", "_tlsrekey.pyi")
             if os.path.exists(os.path.join(ROOT, "python", "tlsrekey", f))]
    steps = [
        ["python3", "-m", "venv", venv],
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", what],
        [py, "-c", IMPORT_CHECK] + extra,
    ]
    for cmd in steps:
        status, out = run(cmd, log, env=env, cwd=work, limit=LIMIT_PACKAGING, echo=False)
        if status != 0:
            say(tail(out))
            say("FAILED packaging: %s (%s)" % (label, " ".join(cmd[:4])[:120]))
            res.failed += 1
            return
    say(out.strip())
    say("ok packaging: %s" % label)
    res.passed += 1


def tail(text, n=40):
    return "\n".join(text.rstrip().splitlines()[-n:])


def license_problem(path):
    """What a built sdist or wheel lacks of the licence: the LICENSE file, and (the
    wheel) metadata naming MIT; None when both are there."""
    import tarfile
    import zipfile
    if path.endswith(".whl"):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            meta = [n for n in names if n.endswith(".dist-info/METADATA")]
            text = z.read(meta[0]).decode() if meta else ""
        if not any(os.path.basename(n) == "LICENSE" for n in names):
            return "no LICENSE file in the wheel"
        if "MIT" not in text:
            return "the wheel's METADATA does not name the MIT licence"
        return None
    with tarfile.open(path) as t:
        if not any(os.path.basename(n) == "LICENSE" for n in t.getnames()):
            return "no LICENSE file in the sdist"
    return None


def suite_packaging_python(res, log):
    work = tempfile.mkdtemp(prefix="tlsrekey-pkg-")
    try:
        install_and_import(res, log, ROOT, "pip install .", work)
        dist = os.path.join(ROOT, "build", "dist")
        shutil.rmtree(dist, ignore_errors=True)
        # No --sdist/--wheel: build makes the sdist, then the wheel from the sdist,
        # which also proves the sdist carries everything the build needs.
        status, out = run([VPY, "-m", "build", "--outdir", dist, ROOT], log,
                          env=clean_env(), cwd=work, limit=LIMIT_PACKAGING, echo=False)
        if status != 0:
            say(tail(out))
        sdists = glob.glob(os.path.join(dist, "*.tar.gz"))
        wheels = glob.glob(os.path.join(dist, "*.whl"))
        for label, found in (("sdist", sdists), ("wheel", wheels)):
            if status != 0 or len(found) != 1:
                say("FAILED packaging: %s (python -m build: status %s, %d file(s))"
                    % (label, status, len(found)))
                res.failed += 1
            else:
                install_and_import(res, log, found[0], label, work)
                problem = license_problem(found[0])
                if problem:
                    say("FAILED packaging: %s: %s" % (label, problem))
                    res.failed += 1
                else:
                    res.passed += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def suite_packaging_lua(res, log):
    script = os.path.join(ROOT, "tests", "lua", "packaging.sh")
    if not os.path.exists(script):
        say("FAILED packaging: lua rock (tests/lua/packaging.sh does not exist)")
        res.failed += 1
        return
    status, out = run(["bash", script], log, env=clean_env(), limit=LIMIT_PACKAGING,
                      echo=False)
    say(tail(out, 15))
    if status == 0:
        say("ok packaging: lua rock")
        res.passed += 1
    else:
        say("FAILED packaging: lua rock (tests/lua/packaging.sh exited %s)" % status)
        res.failed += 1


# --- the platform matrix ---------------------------------------------------------
#
# The same tests on the platforms users run: the Python suite under every CPython
# 3.10-3.13 on this machine (each in a venv of its own, the package installed with a
# plain `pip install .`), and the whole of `make test` inside the other Debian (13
# on a Debian 12 host, 12 on a Debian 13 host: the other OpenSSL, Python and Lua),
# in a root made once by scripts/other-debian.sh. A run inside that root sets
# TRK_PLATFORM_INNER and skips the matrix.

PY_MATRIX = ("3.10", "3.11", "3.12", "3.13")
LIMIT_OTHER_DEBIAN = 2700


def find_pythons():
    """{"3.10": path, ...}: for each minor version of PY_MATRIX, the newest
    interpreter found under pyenv or on PATH."""
    found = {}
    roots = [os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))]
    for root in roots:
        for exe in sorted(glob.glob(os.path.join(root, "versions", "3.*", "bin", "python3.*"))):
            m = re.search(r"versions/(3\.\d+)\.(\d+)/bin/python(3\.\d+)$", exe)
            if m and m.group(1) == m.group(3) and m.group(1) in PY_MATRIX:
                key = m.group(1)
                patch = int(m.group(2))
                if key not in found or patch > found[key][0]:
                    found[key] = (patch, exe)
    result = {k: v[1] for k, v in found.items()}
    for minor in PY_MATRIX:
        if minor not in result:
            exe = shutil.which("python" + minor)
            if exe:
                result[minor] = exe
    return result


def suite_python_version(minor, exe):
    def suite(res, log):
        venv = os.path.join(ROOT, "build", "venvs", "py" + minor)
        py = os.path.join(venv, "bin", "python")
        env = clean_env()
        version = subprocess.run([exe, "--version"], capture_output=True, text=True)
        say("%s: %s" % (exe, (version.stdout or version.stderr).strip()))
        steps = []
        if not os.path.exists(py):
            steps.append([exe, "-m", "venv", venv])
        steps += [
            [py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "-r", os.path.join(ROOT, "scripts", "requirements-dev.txt")],
            # plain `pip install .`, as a user would; --force-reinstall: the same
            # version number is rebuilt from this tree every time
            [py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "--force-reinstall", "--no-deps", ROOT],
        ]
        for cmd in steps:
            status, out = run(cmd, log, env=env, limit=LIMIT_PACKAGING, echo=False)
            if status != 0:
                say(tail(out))
                res.problem("%s failed" % " ".join(cmd[:4]))
                return
        status, out = run([py, "-c", "import tlsrekey, sys; print(tlsrekey.__file__, "
                           "tlsrekey.OPENSSL_VERSION, sys.version.split()[0])"],
                          log, env=env, limit=60, echo=False)
        if status != 0 or "site-packages" not in out:
            say(tail(out))
            res.problem("the venv does not import the installed package")
            return
        say(out.strip())
        xml = os.path.join(RESULTS, "python-%s.xml" % minor)
        if os.path.exists(xml):
            os.remove(xml)
        # No PYTHONPATH: the tests import the installed package.
        status, out = run([py, "-m", "pytest", "tests/python", "-q", "-p", "no:cacheprovider",
                           "--junitxml=" + xml], log, env=env, limit=LIMIT_SUITE)
        if status is None:
            res.problem("pytest timed out")
        elif status not in (0, 1):
            res.problem("pytest exited with status %s" % status)
        before = res.failed
        count_junit(res, xml)
        if status == 1 and res.failed == before:
            res.problem("pytest exited 1 but its report shows no failing test")
        if res.passed + res.failed == 0:
            res.problem("pytest ran no test")
    return suite


def suite_other_debian(res, log):
    """`make test` inside the other Debian. Its closing line is counted; its own
    summary table is repeated here, each row under this suite's name."""
    script = os.path.join(ROOT, "scripts", "other-debian.sh")
    status, release = run(["bash", script, "release"], log, limit=60, echo=False)
    if status != 0:
        res.problem("no other Debian for this host: %s" % release.strip())
        return
    status, out = run(["bash", script, "run", "make", "test"], log,
                      limit=LIMIT_OTHER_DEBIAN, echo=False)
    summary = out.rsplit("summary ===", 1)[-1] if "summary ===" in out else ""
    for line in summary.splitlines():
        if re.match(r"^\s+\S+\s+\d+ passed", line) or line.startswith("total time"):
            say("  debian-%s %s" % (release.strip(), line.strip()))
    found = COUNT_LINE.findall(out)
    if not found:
        say(tail(out, 60))
        res.problem("`make test` in Debian %s ended (status %s) without its "
                    "'N passed, N failed' line" % (release.strip(), status))
        return
    p, f = map(int, found[-1])
    res.passed += p
    res.failed += f
    m = re.search(r"^\d+ passed, \d+ failed, (\d+) skipped", out, re.M)
    if m:
        res.skipped += int(m.group(1))
    if status != 0 and f == 0:
        res.problem("`make test` in Debian %s exited %s" % (release.strip(), status))
    if f:
        failing = [l for l in out.splitlines() if l.startswith(("  ", "!! ", "FAILED"))
                   and ("FAIL" in l or "!!" in l or "::" in l)]
        say("\n".join(failing[:60]))


def platform_suites():
    if os.environ.get("TRK_PLATFORM_INNER"):
        return []
    suites = []
    for minor, exe in sorted(find_pythons().items(), key=lambda kv: tuple(map(int, kv[0].split(".")))):
        suites.append(("py" + minor, "Python suite on CPython %s (pip install . in a venv)"
                       % minor, suite_python_version(minor, exe)))
    suites.append(("other-debian", "The whole of make test in the other Debian "
                   "(scripts/other-debian.sh)", suite_other_debian))
    return suites


SUITES = [
    ("c", "C core tests", suite_c),
    ("python", "Python (pytest)", suite_python),
    ("lua", "Lua (busted)", suite_lua),
    ("interop", "Interop matrix (pytest tests/interop)", suite_interop),
    ("c-asan", "C core tests, ASan+UBSan", suite_c_asan),
    ("c-tsan", "C core tests, ThreadSanitizer", suite_c_tsan),
    ("python-tsan", "Threaded Python tests, ThreadSanitizer", suite_python_tsan),
    ("python-asan", "Python, ASan+UBSan", suite_python_asan),
    ("lua-asan", "Lua, ASan+UBSan", suite_lua_asan),
    ("interop-asan", "Interop matrix, ASan+UBSan (less the in-process pyOpenSSL)",
     suite_interop_asan),
    ("valgrind", "C core tests under valgrind memcheck (make valgrind)", suite_valgrind),
    ("leaks", "Leak loops, Python and Lua (make soak-short)", suite_leaks),
    ("fuzz", "Fuzzing the core (make fuzz-short)", suite_fuzz),
    ("packaging-python", "Python packaging: pip install ., sdist, wheel", suite_packaging_python),
    ("packaging-lua", "Lua packaging: luarocks make", suite_packaging_lua),
]


def main():
    os.chdir(ROOT)
    suites = SUITES + platform_suites()
    os.makedirs(RESULTS, exist_ok=True)
    only = set(sys.argv[1:])          # e.g. `scripts/run_tests.py lua lua-asan`
    if "pythons" in only:             # every py3.X suite of the matrix found here
        only.discard("pythons")
        only |= {k for k, _, _ in suites if k.startswith("py3.")}
    unknown = only - {k for k, _, _ in suites}
    if unknown:
        sys.exit("unknown suite(s): %s; known: %s"
                 % (" ".join(sorted(unknown)), " ".join(k for k, _, _ in suites)))
    start = time.monotonic()
    prebuild = os.path.join(RESULTS, "build.log")
    if os.path.exists(prebuild):
        os.remove(prebuild)
    # Build everything first on both cores; whatever fails here is built (and fails)
    # again inside its own suite, which then counts it.
    jobs = [] if re.search(r"-j|jobserver", os.environ.get("MAKEFLAGS", "")) else ["-j2"]
    banner("build")
    run(["make", "--no-print-directory", "-k"] + jobs + ["build", "build-asan", "build-tsan-c",
                                                          "build-tsan-python"], prebuild)
    results = []
    for key, title, fn in suites:
        if only and key not in only:
            continue
        banner(title)
        res = Result(key)
        log = os.path.join(RESULTS, key + ".log")
        if os.path.exists(log):
            os.remove(log)
        t0 = time.monotonic()
        try:
            fn(res, log)
        except Exception as e:   # a bug here must not hide the other suites
            res.problem("runner error: %r" % (e,))
        res.seconds = time.monotonic() - t0
        for p in res.problems:
            say("!! %s: %s" % (key, p))
        results.append(res)

    banner("summary")
    for r in results:
        say("  %-18s %5d passed %4d failed %4d skipped %7.1f s%s"
            % (r.name, r.passed, r.failed, r.skipped, r.seconds,
               "   <- " + "; ".join(r.problems) if r.problems else ""))
    total = time.monotonic() - start
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    skipped = sum(r.skipped for r in results)
    say("total time %.0f s (%d min %02d s); logs in %s"
        % (total, total // 60, total % 60, rel(RESULTS)))
    say("%d passed, %d failed" % (passed, failed) + (", %d skipped" % skipped if skipped else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
