"""scripts/run_tests.py's judgement of sanitizer reports: a leak record made only of
the interpreter's own frames is CPython's, not ours; any frame of ours keeps it."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("run_tests", ROOT / "scripts" / "run_tests.py")
run_tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_tests)

MALLOC = ("    #0 0x7ff14b0b89cf in __interceptor_malloc "
          "../../../../src/libsanitizer/asan/asan_malloc_linux.cpp:69\n")


def record(*frames):
    lines = ["Direct leak of 96 byte(s) in 4 object(s) allocated from:", MALLOC.rstrip()]
    lines += ["    #%d 0x7ff14a4d6cce in %s" % (i + 1, f) for i, f in enumerate(frames)]
    return "\n".join(lines) + "\n"


def test_interpreter_frames_by_module_or_by_cpython_source_line_are_the_interpreters():
    assert run_tests.interpreter_only(record("PyObject_Malloc (libpython3.11.so.1.0+0x1234)"))
    # an interpreter built with its debug information symbolizes to its own tree
    assert run_tests.interpreter_only(record("raw_malloc Modules/_tracemalloc.c:260",
                                             "traceback_new Modules/_tracemalloc.c:452"))


def test_a_frame_of_ours_keeps_the_record():
    assert not run_tests.interpreter_only(record("raw_malloc Modules/_tracemalloc.c:260",
                                                 "trk__stash_put csrc/connection.c:801"))
    assert not run_tests.interpreter_only(record("shim_raise python/src/errors.c:300"))
    assert not run_tests.interpreter_only(record("f (_tlsrekey.cpython-311.so+0x99)"))
