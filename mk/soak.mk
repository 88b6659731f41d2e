# mk/soak.mk - leak loops and long-haul runs (tests/soak/), for `-include mk/*.mk`.
#
#   make soak          the long job (tens of minutes): 100,000-cycle leak loops in
#                      Python and Lua, the long-haul suites with SOAK_UPDATES (100,000)
#                      key updates, 10,000 key updates over sockets and against real
#                      peers, the long runs against the stacks of tests/interop
#                      (Go, JSSE, wolfSSL, Mbed TLS, curl, lighttpd: marker soak,
#                      SOAK_INTEROP_SCALE multiplies their counts), and the property
#                      test with 3,000 examples
#   make soak-short    the short leak loops (2,000 cycles each): part of make test
#
# Uses the root Makefile's VPY, LUA and build-python / build-lua targets. Leak
# figures: each loop prints the RSS (and Lua heap) growth of every kind of cycle.

SOAK_CYCLES ?= 100000
SOAK_SHORT_CYCLES ?= 2000
SOAK_UPDATES ?= 100000
SOAK_EXAMPLES ?= 3000
BUSTED ?= /usr/bin/busted
SOAK_PY_ENV := PYTHONPATH=python
SOAK_LUA_ENV := LUA_CPATH='build/lua/?.so;;' LUA_PATH='lua/?.lua;tests/lua/?.lua;;'

.PHONY: soak soak-short soak-leaks soak-long-haul

soak-short: build-python build-lua
	$(SOAK_PY_ENV) $(VPY) tests/soak/leak_loop.py $(SOAK_SHORT_CYCLES) 0.5
	$(SOAK_LUA_ENV) $(LUA) tests/soak/leak_loop.lua $(SOAK_SHORT_CYCLES) 0.5

soak-leaks: build-python build-lua
	$(SOAK_PY_ENV) $(VPY) tests/soak/leak_loop.py $(SOAK_CYCLES) 1.0
	$(SOAK_LUA_ENV) $(LUA) tests/soak/leak_loop.lua $(SOAK_CYCLES) 1.0

soak-long-haul: build-python build-lua
	TLSREKEY_LONG_HAUL_UPDATES=$(SOAK_UPDATES) $(SOAK_PY_ENV) $(VPY) -m pytest -q \
	    -p no:cacheprovider tests/python/test_long_haul.py tests/soak
	TLSREKEY_INTEROP_SOAK=1 $(SOAK_PY_ENV) $(VPY) -m pytest -q -p no:cacheprovider \
	    -m soak tests/interop
	TLSREKEY_HYPOTHESIS_EXAMPLES=$(SOAK_EXAMPLES) $(SOAK_PY_ENV) $(VPY) -m pytest -q \
	    -p no:cacheprovider tests/python/test_properties.py
	TLSREKEY_LONG_HAUL_UPDATES=$(SOAK_UPDATES) $(SOAK_LUA_ENV) $(LUA) $(BUSTED) \
	    tests/lua/long_haul_spec.lua

soak: soak-leaks soak-long-haul
