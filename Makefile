# tlsrekey: build, test and demo. `make help` lists the targets.
#
# Three things are built from the one core in csrc/:
#   build/c/test_*                      the C core tests (tests/c/test_*.c + csrc/*.c)
#   python/tlsrekey/_tlsrekey*.so       the Python extension, in place (setup.py)
#   build/lua/tlsrekey/core.so          the Lua module tlsrekey.core
# and, for `make test`, the same three under AddressSanitizer + UBSan in build/asan/.
# An edit to csrc/ rebuilds all of them.

SHELL := /bin/bash
.DEFAULT_GOAL := build
.DELETE_ON_ERROR:
# The core objects are shared by every test program: keep them between runs.
.SECONDARY:

ifeq ($(origin CC),default)
CC := gcc
endif
PYTHON3 ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
LUA ?= lua5.4
LUA_INC ?= /usr/include/lua5.4
LIBS := -lssl -lcrypto

WARN := -Wall -Wextra
# The core is warning-free (gcc and clang, -O1 to -O2), so in our own build of it a
# warning is an error; `make CORE_WERROR=` turns that off. setup.py and the rockspec
# never use -Werror: users build with whatever compiler they have.
CORE_WERROR ?= -Werror
OPT := -O2 -g
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -g -O1
SAN_LD := -fsanitize=address,undefined
# Python's own CFLAGS come first and carry -fwrapv (no signed overflow for UBSan to
# see) and -DNDEBUG (no assert): undo both for the sanitizer build.
SAN_PY := -fno-wrapv -UNDEBUG

CORE_SRC := $(wildcard csrc/*.c)
CORE_HDR := $(wildcard csrc/*.h)
CORE_OBJ := $(CORE_SRC:csrc/%.c=build/obj/%.o)
CORE_OBJ_ASAN := $(CORE_SRC:csrc/%.c=build/asan/obj/%.o)
CORE_OBJ_TSAN := $(CORE_SRC:csrc/%.c=build/tsan/obj/%.o)
TSAN := -fsanitize=thread -fno-omit-frame-pointer -g -O1

# tests/c: each test_*.c is one program; any other .c there is a helper linked into
# every test program; headers there are shared too.
C_TEST_SRC := $(wildcard tests/c/test_*.c)
C_HELPER_SRC := $(filter-out $(C_TEST_SRC),$(wildcard tests/c/*.c))
C_TEST_HDR := $(wildcard tests/c/*.h)
C_TESTS := $(C_TEST_SRC:tests/c/%.c=build/c/%)
C_TESTS_ASAN := $(C_TEST_SRC:tests/c/%.c=build/asan/c/%)
C_TESTS_TSAN := $(C_TEST_SRC:tests/c/%.c=build/tsan/c/%)

EXT_SUFFIX := $(shell $(PYTHON3) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
PY_SHIM := $(wildcard python/src/*.c python/src/*.h)
PY_PKG := $(wildcard python/tlsrekey/*.py python/tlsrekey/*.pyi python/tlsrekey/py.typed)
PY_EXT := python/tlsrekey/_tlsrekey$(EXT_SUFFIX)
PY_EXT_ASAN := build/asan/python/tlsrekey/_tlsrekey$(EXT_SUFFIX)
PY_EXT_TSAN := build/tsan/python/tlsrekey/_tlsrekey$(EXT_SUFFIX)

LUA_SHIM_SRC := $(wildcard lua/src/*.c)
LUA_SHIM := $(LUA_SHIM_SRC) $(wildcard lua/src/*.h)
LUA_MOD := build/lua/tlsrekey/core.so
LUA_MOD_ASAN := build/asan/lua/tlsrekey/core.so

DEPS_STAMP := $(VENV)/.deps-stamp

.PHONY: help deps build build-c build-python build-lua build-asan build-asan-c \
        build-asan-python build-asan-lua build-tsan-c build-tsan-python test test-other-debian test-pythons demo bench \
        clean

help:
	@cat scripts/README-make.txt

# --- dependencies -----------------------------------------------------------

# Debian packages (checked every time, installed only when missing), then the venv
# (filled once, again only when scripts/requirements-dev.txt changes).
deps: $(DEPS_STAMP)
	@scripts/deps.sh

$(DEPS_STAMP): scripts/requirements-dev.txt scripts/deps.sh
	scripts/deps.sh --venv
	@touch $@

# --- the normal build -------------------------------------------------------

build: build-c build-python build-lua

build/obj/%.o: csrc/%.c $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(OPT) -fPIC $(WARN) $(CORE_WERROR) -Icsrc -c $< -o $@

build-c: $(C_TESTS)

build/c/%: tests/c/%.c $(C_HELPER_SRC) $(C_TEST_HDR) $(CORE_OBJ)
	@mkdir -p $(@D)
	$(CC) $(OPT) $(WARN) -Icsrc -Itests/c $< $(C_HELPER_SRC) $(CORE_OBJ) $(LIBS) -o $@

build-python: $(PY_EXT)

$(PY_EXT): $(CORE_SRC) $(CORE_HDR) $(PY_SHIM) setup.py | $(DEPS_STAMP)
	$(VPY) setup.py -q build_ext --inplace --force

build-lua: $(LUA_MOD)

$(LUA_MOD): $(CORE_SRC) $(CORE_HDR) $(LUA_SHIM)
	@mkdir -p $(@D)
	$(CC) -shared -fPIC $(OPT) $(WARN) -Icsrc -I$(LUA_INC) $(LUA_SHIM_SRC) $(CORE_SRC) $(LIBS) -o $@

# --- the same under AddressSanitizer + UBSan, and under ThreadSanitizer ------
#
# One set of rules per sanitizer, from one template: $(1) is the directory under
# build/ (asan, tsan), $(2) and $(3) name the variables holding the compile and link
# flags (names, not values: the flags hold commas, which $(call) would split).
# Each gets the core's objects, the C test programs, and the Python extension in a
# complete package directory of its own, so that PYTHONPATH=build/$(1)/python
# imports it and never the normal build.
TSAN_LD := -fsanitize=thread

define sanitized_build
build/$(1)/obj/%.o: csrc/%.c $$(CORE_HDR)
	@mkdir -p $$(@D)
	$$(CC) $$($(2)) $$(WARN) $$(CORE_WERROR) -Icsrc -c $$< -o $$@

build/$(1)/c/%: tests/c/%.c $$(C_HELPER_SRC) $$(C_TEST_HDR) $$(CORE_SRC:csrc/%.c=build/$(1)/obj/%.o)
	@mkdir -p $$(@D)
	$$(CC) $$($(2)) $$(WARN) -Icsrc -Itests/c $$< $$(C_HELPER_SRC) \
	    $$(CORE_SRC:csrc/%.c=build/$(1)/obj/%.o) $$(LIBS) -o $$@

build/$(1)/python/tlsrekey/_tlsrekey$$(EXT_SUFFIX): $$(CORE_SRC) $$(CORE_HDR) $$(PY_SHIM) \
        $$(PY_PKG) setup.py | $$(DEPS_STAMP)
	rm -rf build/$(1)/python
	CFLAGS='$$($(2)) $$(SAN_PY)' LDFLAGS='$$($(3))' $$(VPY) setup.py -q build_ext --force \
	    --build-lib build/$(1)/python --build-temp build/$(1)/tmp
	tar -C python -cf - --exclude='*.so' --exclude=__pycache__ tlsrekey \
	    | tar -C build/$(1)/python -xf -
	@test -f $$@ || { echo "setup.py did not produce $$@" >&2; exit 1; }
endef

$(eval $(call sanitized_build,asan,SAN,SAN_LD))
$(eval $(call sanitized_build,tsan,TSAN,TSAN_LD))

build-asan: build-asan-c build-asan-python build-asan-lua
build-asan-c: $(C_TESTS_ASAN)
build-asan-python: $(PY_EXT_ASAN)
# The threaded Python tests run against this one with libtsan preloaded.
build-tsan-c: $(C_TESTS_TSAN)
build-tsan-python: $(PY_EXT_TSAN)

build-asan-lua: $(LUA_MOD_ASAN) build/asan/nodlclose.so

# Preloaded into the sanitized Lua run so that leak reports can name tlsrekey's
# frames (see the file).
build/asan/nodlclose.so: tests/sanitizers/nodlclose.c
	@mkdir -p $(@D)
	$(CC) -shared -fPIC -O2 $(WARN) $< -o $@

$(LUA_MOD_ASAN): $(CORE_SRC) $(CORE_HDR) $(LUA_SHIM)
	@mkdir -p $(@D)
	$(CC) -shared -fPIC $(SAN) $(WARN) -Icsrc -I$(LUA_INC) $(LUA_SHIM_SRC) $(CORE_SRC) $(LIBS) $(SAN_LD) -o $@

# --- what a person runs -----------------------------------------------------

# Every suite runs even when an earlier one failed; each builds what it needs first,
# so a broken binding does not hide the results of the others.
test: deps
	+@$(PYTHON3) scripts/run_tests.py

# The platform matrix alone: the whole suite in the other Debian, or the Python suite
# under every CPython 3.10-3.13 found (both are also part of `make test`).
test-other-debian: deps
	+@$(PYTHON3) scripts/run_tests.py other-debian

test-pythons: deps
	+@$(PYTHON3) scripts/run_tests.py pythons

# The build is quiet here (-s: no command lines; warnings still show).
demo: deps
	@$(MAKE) -s --no-print-directory build-python build-lua
	@echo; echo "=== Python: PYTHONPATH=python .venv/bin/python demo/demo.py ==="; echo
	@PYTHONPATH=python $(VPY) demo/demo.py
	@echo; echo "=== Lua: lua5.4 demo/demo.lua ==="; echo
	@LUA_CPATH='build/lua/?.so;;' LUA_PATH='lua/?.lua;;' $(LUA) demo/demo.lua

# bench/run.py: tlsrekey against the C limit and the peer bindings, interleaved,
# several rounds; `make bench BENCH_ARGS=--quick` for a one-minute run.
bench: deps
	@$(MAKE) -s --no-print-directory build-python build-lua
	$(VPY) bench/run.py $(BENCH_ARGS)

# A root of the other Debian (scripts/other-debian.sh) may still have /proc, /sys and
# /dev mounted if a run was killed: unmount them first, and never cross into them.
clean:
	-@for m in $$(awk '{print $$2}' /proc/mounts | grep "^$(CURDIR)/build/roots/" | sort -r); do \
	    umount "$$m" 2>/dev/null || umount -l "$$m"; done
	rm -rf --one-file-system build python/tlsrekey/_tlsrekey*.so python/tlsrekey/__pycache__ \
	       python/*.egg-info *.egg-info .pytest_cache .mypy_cache

# Targets of their own (fuzz, soak, valgrind, bench helpers, docs): one file each.
-include mk/*.mk
