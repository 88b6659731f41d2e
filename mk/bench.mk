# mk/bench.mk - benchmark helpers next to the root Makefile's `bench` target
# (bench/README.md). The root Makefile already has `bench` (deps, build-python,
# build-lua, then bench/run.py), so this file adds no second recipe for it; it is
# meant for `-include mk/*.mk` and uses the root Makefile's CC, OPT, WARN, LIBS, VPY
# and LUA. Not part of `make test`.
#
#   make bench                    the full run (root Makefile): every implementation x
#                                 workload, 5 interleaved rounds; the table, and JSON
#                                 in bench/results/
#   make bench-quick              scaled-down counts, one round: a smoke run (< 1 min)
#   make bench-limit              only the C limit program (run.py also builds it)
#   make bench BENCH_ARGS='--only tlsrekey --workloads W1,W2 --rounds 5'

BENCH_LIMIT := build/bench/limit

.PHONY: bench-quick bench-limit

bench-limit: $(BENCH_LIMIT)

$(BENCH_LIMIT): bench/c/limit.c
	@mkdir -p $(@D)
	$(CC) $(OPT) $(WARN) $< $(LIBS) -o $@

bench-quick: deps $(BENCH_LIMIT)
	@$(MAKE) -s --no-print-directory build-python build-lua
	$(VPY) bench/run.py --quick --limit $(BENCH_LIMIT) --lua $(LUA) $(BENCH_ARGS)
