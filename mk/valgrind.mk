# mk/valgrind.mk - the C core tests under valgrind memcheck, for `-include mk/*.mk`.
#
#   make valgrind      every build/c/test_* under memcheck: no error, no definite or
#                      indirect leak (OpenSSL's reachable globals are not leaks)
#
# One log per program in build/valgrind/; `make -j2 valgrind` runs two at a time.
# VALGRIND_FLAGS+=--track-origins=yes says where an uninitialised value came from.
# Uses the root Makefile's build-c target (tests/c/test_*.c + csrc/).

VALGRIND ?= valgrind
VALGRIND_FLAGS ?= --error-exitcode=1 --leak-check=full \
                  --errors-for-leak-kinds=definite,indirect -q
VALGRIND_TESTS := $(patsubst tests/c/%.c,%,$(wildcard tests/c/test_*.c))
VALGRIND_LOGS := $(VALGRIND_TESTS:%=build/valgrind/%.log)

.PHONY: valgrind $(VALGRIND_LOGS)

valgrind: $(VALGRIND_LOGS)
	@echo "valgrind: $(words $(VALGRIND_LOGS)) C test programs, no memcheck error, no leak"

# Phony on purpose: a log is a record of the last run, never a reason to skip one.
$(VALGRIND_LOGS): build/valgrind/%.log: | build-c
	@mkdir -p $(@D)
	@if $(VALGRIND) $(VALGRIND_FLAGS) build/c/$* > $@ 2>&1; then \
	    echo "valgrind: $* clean ($$(grep -Eo '[0-9]+ passed, [0-9]+ failed' $@ | tail -1))"; \
	else \
	    cat $@; echo "valgrind: $* FAILED (log $@)"; exit 1; \
	fi
