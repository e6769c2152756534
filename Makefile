# llmroute — see README.md.  `make` builds, `make test` runs every test,
# `make SANITIZE=address,undefined test` does the same under ASan+UBSan.

CC       ?= cc
SANITIZE ?=
CFLAGS   ?= -O2 -g
XCFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread \
            -Icommon -Iconf -Ishm -Iworker -Imaster
# Fixed, not from pkg-config: on a fresh machine the libraries are installed
# by the first rule that runs, after this Makefile has been read.
XLDLIBS  := -levent -lcurl -lssl -lcrypto -lconfig -lrt -lm -pthread

# Invariant checks of the request path (worker/request.h: LLMR_CHECK) in
# sanitizer and debug builds.
ifneq ($(SANITIZE)$(DEBUG),)
XCFLAGS += -DLLMR_CHECKS
endif

ifneq ($(SANITIZE),)
XCFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
XLDFLAGS := -fsanitize=$(SANITIZE)
BUILD   ?= build/san
else
BUILD   ?= build
endif

COMMON_SRC := $(wildcard common/*.c)
CONF_SRC   := $(wildcard conf/*.c)
SHM_SRC    := $(wildcard shm/*.c)
WORKER_SRC := $(wildcard worker/*.c)
MASTER_SRC := $(filter-out master/main.c,$(wildcard master/*.c))
LIB_SRC    := $(COMMON_SRC) $(CONF_SRC) $(SHM_SRC) $(WORKER_SRC) $(MASTER_SRC)
LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/%.o)
MOCK_SRC   := $(wildcard tests/mock/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

LLMROUTE := $(BUILD)/llmroute
MOCK     := $(BUILD)/llmroute-mock
LAT      := $(BUILD)/llmroute-lat
STREAMS  := $(BUILD)/llmroute-streams
ROUTE    := $(BUILD)/llmroute-route

.PHONY: all test unit integration run bench clean deps fuzz
all: $(LLMROUTE) $(MOCK) $(LAT) $(STREAMS) $(ROUTE) $(UNIT_BIN)

# Installs the build dependencies once per build tree (idempotent script).
DEPS_OK := $(BUILD)/.deps-ok
$(DEPS_OK): scripts/install-deps.sh
	@mkdir -p $(dir $@)
	scripts/install-deps.sh
	@touch $@

$(BUILD)/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) $(XCFLAGS) -MMD -MP -c -o $@ $<

# The default config is found under this prefix, like nginx's --prefix.
$(BUILD)/master/main.o: XCFLAGS += -DLLMR_PREFIX='"$(CURDIR)"'

$(BUILD)/liblllmr.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(LLMROUTE): $(BUILD)/master/main.o $(BUILD)/liblllmr.a
	$(CC) $(LDFLAGS) $(XLDFLAGS) -o $@ $^ $(XLDLIBS) $(LDLIBS)

$(MOCK): $(MOCK_SRC:%.c=$(BUILD)/%.o) $(BUILD)/common/log.o
	$(CC) $(LDFLAGS) $(XLDFLAGS) -o $@ $^ $(XLDLIBS) $(LDLIBS)

$(LAT): $(BUILD)/bench/latency.o
	$(CC) $(LDFLAGS) $(XLDFLAGS) -o $@ $^

$(STREAMS): $(BUILD)/bench/streams.o
	$(CC) $(LDFLAGS) $(XLDFLAGS) -o $@ $^

$(ROUTE): $(BUILD)/bench/route.o $(BUILD)/liblllmr.a
	$(CC) $(LDFLAGS) $(XLDFLAGS) -o $@ $^ $(XLDLIBS) $(LDLIBS)

# Unit tests #include the unit under test to reach its statics, so each links
# against the library minus nothing: the linker takes the first definition.
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/liblllmr.a $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(LDFLAGS) $(XLDFLAGS) -Itests/unit -o $@ $< $(BUILD)/liblllmr.a $(XLDLIBS) $(LDLIBS)

test: all
	@BUILD=$(BUILD) scripts/run-tests.sh

unit: all
	@BUILD=$(BUILD) scripts/run-tests.sh unit

integration: all
	@BUILD=$(BUILD) scripts/run-tests.sh integration

# exec: make's SIGTERM (it sends one to its children) reaches the script,
# which stops everything it started.
run: all
	@exec env BUILD=$(BUILD) scripts/run.sh

bench: all
	@BUILD=$(BUILD) scripts/bench.sh

deps: $(DEPS_OK)

# libFuzzer targets (clang), each run for FUZZ_SECONDS; not part of `test`.
# Seeds: request bodies and answers in tests/fuzz/seeds-json, the example
# config for fuzz_conf.  Inputs may grow to 1 MiB, and any input slower than
# FUZZ_TIMEOUT seconds (a quadratic path) fails like a crash, its input saved
# in build/fuzz/.  The 1 MiB hostile bodies of tests/fuzz/big_seeds.py run
# once first, each under the same timeout: in the corpus they would slow
# every mutation a hundredfold.  fuzz_conf checks leaks at exit only:
# libconfig's own (suppressed) leak would otherwise trigger a leak scan on
# most inputs.  `make fuzz FUZZ_SECONDS=10` is a short bounded run for CI.
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 10
FUZZ_CFLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -Icommon -Iconf -Ishm -Iworker \
               -fsanitize=fuzzer,address,undefined
FUZZ_SRC := common/log.c worker/json.c $(CONF_SRC)
FUZZ_RUN = LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp
FUZZ_ARGS = -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=4096 -artifact_prefix=build/fuzz/
FUZZ_LOOP = $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) -max_len=1048576 -print_final_stats=1
fuzz: $(DEPS_OK)
	@mkdir -p build/fuzz/corpus-json build/fuzz/corpus-conf build/fuzz/seeds-conf
	clang $(FUZZ_CFLAGS) -o build/fuzz/fuzz_json tests/fuzz/fuzz_json.c worker/estimate.c $(FUZZ_SRC) -lconfig
	clang $(FUZZ_CFLAGS) -o build/fuzz/fuzz_conf tests/fuzz/fuzz_conf.c $(FUZZ_SRC) -lconfig
	python3 tests/fuzz/big_seeds.py build/fuzz/seeds-big
	cp conf/llmroute.conf build/fuzz/seeds-conf/llmroute.conf
	$(FUZZ_RUN) build/fuzz/fuzz_json $(FUZZ_ARGS) build/fuzz/seeds-big/*
	$(FUZZ_RUN) build/fuzz/fuzz_json $(FUZZ_LOOP) build/fuzz/corpus-json tests/fuzz/seeds-json
	$(FUZZ_RUN) build/fuzz/fuzz_conf $(FUZZ_LOOP) -detect_leaks=0 build/fuzz/corpus-conf \
	    tests/fuzz/seeds-conf build/fuzz/seeds-conf

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
