# mk/fuzz.mk - the libFuzzer harness of the core (tests/fuzz/), for `-include mk/*.mk`.
#
#   make fuzz          FUZZ_SECONDS (default 300) of libFuzzer on the seed corpus
#   make fuzz-short    FUZZ_SHORT_SECONDS (default 45): the bounded run of make test
#   make fuzz-regress  replays every saved input (tests/fuzz/corpus, regressions) once
#
# Built with clang (-fsanitize=fuzzer,address,undefined) straight from csrc/, so it
# needs nothing of the root Makefile but is rebuilt when csrc/ changes. A crash is
# saved in build/fuzz/artifacts/; keep it in tests/fuzz/regressions/ (see run.sh).

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 300
FUZZ_SHORT_SECONDS ?= 45
FUZZ_CFLAGS ?= -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=undefined
FUZZ_BIN := build/fuzz/fuzz_core

.PHONY: fuzz fuzz-short fuzz-regress

$(FUZZ_BIN): tests/fuzz/fuzz_core.c $(wildcard csrc/*.c csrc/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Icsrc tests/fuzz/fuzz_core.c $(wildcard csrc/*.c) \
	    -lssl -lcrypto -o $@

fuzz: $(FUZZ_BIN)
	tests/fuzz/run.sh $(FUZZ_BIN) $(FUZZ_SECONDS)

fuzz-short: $(FUZZ_BIN)
	tests/fuzz/run.sh $(FUZZ_BIN) $(FUZZ_SHORT_SECONDS)

fuzz-regress: $(FUZZ_BIN)
	$(FUZZ_BIN) -runs=0 tests/fuzz/corpus $(wildcard tests/fuzz/regressions)
