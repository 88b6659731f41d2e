# Docs and examples (included by the Makefile: -include mk/*.mk).
#   make examples     run every example in examples/, Python then Lua
#   make docs-check   the tests that keep docs/ and examples/ true to the code
# Both also run inside `make test` (pytest and busted pick the tests up).

BUSTED ?= /usr/bin/busted
EXAMPLES_PY := $(wildcard examples/*.py)
EXAMPLES_LUA := $(wildcard examples/*.lua)

.PHONY: examples docs-check

examples: build
	@set -e; for f in $(EXAMPLES_PY); do \
	    echo "=== $$f"; PYTHONPATH=python $(VPY) $$f; done
	@set -e; for f in $(EXAMPLES_LUA); do \
	    echo "=== $$f"; LUA_CPATH='build/lua/?.so;;' LUA_PATH='lua/?.lua;;' $(LUA) $$f; done

docs-check: build
	PYTHONPATH=python $(VPY) -m pytest -q -p no:cacheprovider \
	    tests/python/test_docs.py tests/python/test_examples.py
	LUA_CPATH='build/lua/?.so;;' LUA_PATH='lua/?.lua;tests/lua/?.lua;;' \
	    $(LUA) $(BUSTED) tests/lua/docs_spec.lua tests/lua/examples_spec.lua
