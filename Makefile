# llmroute — see README.md.  `make` builds (it never installs anything),
# `make test` installs what the tests need and runs every test,
# `make SANITIZE=address,undefined test` does the same under ASan+UBSan.
# `make deps` (scripts/install-deps.sh) installs what building and running need.

CC       ?= cc
SANITIZE ?=
CFLAGS   ?= -O2 -g
XCFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread

# Layering (README's Layout): each folder's objects are compiled with only the
# include paths of the folders it may use, so a forbidden include does not
# compile.  main.c alone knows both the master and the worker's entry point.
INC_common := -Icommon
INC_conf   := -Icommon -Iconf
INC_shm    := -Icommon -Ishm
INC_worker := -Icommon -Iconf -Ishm -Iworker
INC_master := -Icommon -Iconf -Ishm -Imaster
INC_main   := $(INC_master) -Iworker
# Tests, mock and benchmarks reach into every folder.
INC_all    := -Icommon -Iconf -Ishm -Iworker -Imaster
layer_inc   = $(or $(INC_$(firstword $(subst /, ,$(1)))),$(INC_all))

# Link flags from pkg-config once the libraries are installed, else the
# fixed list.  Expanded on first use, once: `make run` and `make test`
# install the libraries before the sub-make that builds reads them.
PKG_CONFIG ?= pkg-config
PKG_LIBS   := libevent libevent_openssl libcurl libconfig libssl libcrypto hiredis lmdb yaml-0.1
LIBS_FIXED := -levent -levent_openssl -lcurl -lssl -lcrypto -lconfig -lhiredis -llmdb -lyaml
LIBS_PKG    = $(eval LIBS_PKG := $$(or $$(shell $(PKG_CONFIG) --libs $(PKG_LIBS) 2>/dev/null),$(LIBS_FIXED)))$(LIBS_PKG)
XLDLIBS     = $(LIBS_PKG) -lrt -lm -pthread

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

.PHONY: all test unit integration run bench clean deps fuzz check-layers
all: $(LLMROUTE) $(MOCK) $(LAT) $(STREAMS) $(ROUTE) $(UNIT_BIN)

# What to install: run (build and `make run`), test, bench, fuzz, all.
DEPS ?= run
deps:
	scripts/install-deps.sh $(DEPS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) $(XCFLAGS) $(call layer_inc,$<) -MMD -MP -c -o $@ $<

# The default config is found under this prefix, like nginx's --prefix.
$(BUILD)/master/main.o: XCFLAGS += -DLLMR_PREFIX='"$(CURDIR)"' $(INC_main)

# The status page (GET /ui) is worker/ui/index.html as one C string.
$(BUILD)/gen/ui_page.c: worker/ui/index.html scripts/embed.awk
	@mkdir -p $(dir $@)
	awk -v name=llmr_ui_page -f scripts/embed.awk $< > $@

$(BUILD)/gen/ui_page.o: $(BUILD)/gen/ui_page.c
	@$(CC) $(CFLAGS) $(XCFLAGS) -c -o $@ $<

$(BUILD)/liblllmr.a: $(LIB_OBJ) $(BUILD)/gen/ui_page.o
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
	$(CC) $(CFLAGS) $(XCFLAGS) $(INC_all) $(LDFLAGS) $(XLDFLAGS) -Itests/unit -o $@ $< $(BUILD)/liblllmr.a $(XLDLIBS) $(LDLIBS)

# Proves the include paths enforce the layering: a probe in each folder
# that asks for a header of a folder it may not use must fail to compile,
# and the same probe asking for an allowed one must compile.  A relative
# include ("../worker/worker.h") would bypass the paths: none is allowed.
LAYER_PROBES := master:worker.h shm:conf.h shm:worker.h conf:shm.h common:conf.h \
                worker:master.h
check-layers:
	@scripts/check-layers.sh "$(CC)" "$(XCFLAGS)" $(foreach l,common conf shm worker master,"$(l)=$(INC_$(l))") -- $(LAYER_PROBES)

# Installs what the tests use (nginx and openssl for test_tls.py), then
# builds in a sub-make that reads the installed libraries' flags.
test:
	@scripts/install-deps.sh test
	@$(MAKE) --no-print-directory all check-layers
	@BUILD=$(BUILD) scripts/run-tests.sh

unit: all
	@BUILD=$(BUILD) scripts/run-tests.sh unit

integration: all
	@BUILD=$(BUILD) scripts/run-tests.sh integration

# exec: make's SIGTERM (it sends one to its children) reaches the script,
# which stops everything it started.
run:
	@scripts/install-deps.sh run
	@$(MAKE) --no-print-directory all
	@exec env BUILD=$(BUILD) scripts/run.sh

# `make bench BENCH_ARGS="--cores"` pins the proxy, the load and the upstream to
# cores of their own (machines with more than 2 cores); "--only https" runs only
# the HTTPS upstream scenario, "--only plain" all but it.
bench:
	@scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) scripts/bench.sh $(BENCH_ARGS)

# libFuzzer targets (clang), each run for FUZZ_SECONDS; not part of `test`.
# Seeds: request bodies and answers in tests/fuzz/seeds-json, the example
# config for fuzz_conf, Anthropic and chat shapes in tests/fuzz/seeds-anthropic,
# request heads for fuzz_conn (the head guard, cut into reads anywhere, must
# give the verdict of one read) in tests/fuzz/seeds-conn.  Inputs may grow to 1 MiB, and any input slower than
# FUZZ_TIMEOUT seconds (a quadratic path) fails like a crash, its input saved
# in build/fuzz/.  The 1 MiB hostile bodies of tests/fuzz/big_seeds.py run
# once first, each under the same timeout: in the corpus they would slow
# every mutation a hundredfold.  fuzz_conf checks leaks at exit only:
# libconfig's own (suppressed) leak would otherwise trigger a leak scan on
# most inputs.  `make fuzz FUZZ_SECONDS=10` is a short bounded run for CI.
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 10
FUZZ_CFLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -Icommon -Iconf -Ishm -Iworker \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SRC := common/log.c worker/json.c $(CONF_SRC) common/redis.c
FUZZ_LIBS := -lconfig -lyaml -lhiredis -levent_openssl -levent -lssl -lcrypto
FUZZ_RUN = LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp
FUZZ_ARGS = -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=4096 -artifact_prefix=build/fuzz/
FUZZ_LOOP = $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) -max_len=1048576 -print_final_stats=1
fuzz:
	@scripts/install-deps.sh fuzz
	@mkdir -p build/fuzz/corpus-json build/fuzz/corpus-conf build/fuzz/seeds-conf
	clang $(FUZZ_CFLAGS) -o build/fuzz/fuzz_json tests/fuzz/fuzz_json.c worker/estimate.c $(FUZZ_SRC) $(FUZZ_LIBS)
	clang $(FUZZ_CFLAGS) -o build/fuzz/fuzz_conf tests/fuzz/fuzz_conf.c $(FUZZ_SRC) $(FUZZ_LIBS)
	clang $(FUZZ_CFLAGS) -o build/fuzz/fuzz_yaml tests/fuzz/fuzz_yaml.c $(FUZZ_SRC) $(FUZZ_LIBS)
	clang $(FUZZ_CFLAGS) -o build/fuzz/fuzz_cache tests/fuzz/fuzz_cache.c worker/cache_key.c \
	    worker/cache_entry.c $(FUZZ_SRC) $(FUZZ_LIBS)
	python3 tests/fuzz/big_seeds.py build/fuzz/seeds-big
	cp conf/llmroute.conf build/fuzz/seeds-conf/llmroute.conf
	$(FUZZ_RUN) build/fuzz/fuzz_json $(FUZZ_ARGS) build/fuzz/seeds-big/*
	$(FUZZ_RUN) build/fuzz/fuzz_json $(FUZZ_LOOP) build/fuzz/corpus-json tests/fuzz/seeds-json
	$(FUZZ_RUN) build/fuzz/fuzz_conf $(FUZZ_LOOP) -detect_leaks=0 build/fuzz/corpus-conf \
	    tests/fuzz/seeds-conf build/fuzz/seeds-conf
	@mkdir -p build/fuzz/corpus-yaml
	$(FUZZ_RUN) build/fuzz/fuzz_yaml $(FUZZ_LOOP) -detect_leaks=0 build/fuzz/corpus-yaml \
	    tests/fuzz/seeds-yaml
	@mkdir -p build/fuzz/corpus-anthropic
	clang $(FUZZ_CFLAGS) -o build/fuzz/fuzz_anthropic tests/fuzz/fuzz_anthropic.c \
	    worker/anthropic_req.c worker/anthropic_resp.c worker/anthropic_sse.c worker/json.c -levent
	$(FUZZ_RUN) build/fuzz/fuzz_anthropic $(FUZZ_LOOP) build/fuzz/corpus-anthropic \
	    tests/fuzz/seeds-anthropic
	@mkdir -p build/fuzz/corpus-cache
	$(FUZZ_RUN) build/fuzz/fuzz_cache $(FUZZ_LOOP) build/fuzz/corpus-cache tests/fuzz/seeds-json \
	    tests/fuzz/seeds-cache
	@mkdir -p build/fuzz/corpus-conn
	clang $(FUZZ_CFLAGS) -o build/fuzz/fuzz_conn tests/fuzz/fuzz_conn.c worker/errors.c worker/hblock.c \
	    worker/json.c common/log.c -levent
	$(FUZZ_RUN) build/fuzz/fuzz_conn $(FUZZ_LOOP) build/fuzz/corpus-conn tests/fuzz/seeds-conn

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# `make install` copies what `make` built (it builds first with the same
# flags, never others), like autoconf's layout: PREFIX/bin, PREFIX/share/man,
# the config under SYSCONFDIR (PREFIX/etc, or /etc when PREFIX is /usr as
# Debian packages do), the systemd unit under PREFIX/lib/systemd/system (a
# path systemd searches for both /usr and /usr/local) and the logrotate
# snippet in /etc/logrotate.d, the one place logrotate reads.  The example
# config's pid_file goes under RUNDIR and its access_log under LOGDIR (the
# unit's RuntimeDirectory and LogsDirectory, writable under ProtectSystem=strict;
# the logrotate snippet rotates LOGDIR/*.log).  DESTDIR
# stages the whole tree elsewhere.  The binary keeps its compiled-in -p
# (the source tree): the unit and the man page always pass -c.
PREFIX       ?= /usr/local
SYSCONFDIR   ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
BINDIR       ?= $(PREFIX)/bin
MAN8DIR      ?= $(PREFIX)/share/man/man8
UNITDIR      ?= $(PREFIX)/lib/systemd/system
LOGROTATEDIR ?= /etc/logrotate.d
RUNDIR       ?= /run/llmroute
LOGDIR       ?= /var/log/llmroute
INSTALL      ?= install
# The shipped files name the default layout; these rewrite them for this one.
INSTALL_SED := -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/etc/llmroute|$(SYSCONFDIR)/llmroute|g' \
               -e 's|/usr/local/lib/systemd/system|$(UNITDIR)|g' -e 's|/run/llmroute|$(RUNDIR)|g' \
               -e 's|/var/log/llmroute|$(LOGDIR)|g'

.PHONY: install uninstall
install: $(LLMROUTE)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/llmroute $(DESTDIR)$(MAN8DIR) \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(LOGROTATEDIR)
	$(INSTALL) -m 755 $(LLMROUTE) $(DESTDIR)$(BINDIR)/llmroute
	sed -e 's|^\(  pid_file = \)"llmroute.pid";|\1"$(RUNDIR)/llmroute.pid";|' \
	    -e 's|^\(  access_log = \)"llmroute-access.log";|\1"$(LOGDIR)/access.log";|' \
	    conf/llmroute.conf >$(DESTDIR)$(SYSCONFDIR)/llmroute/llmroute.conf.example
	test -e $(DESTDIR)$(SYSCONFDIR)/llmroute/llmroute.conf || \
	    $(INSTALL) -m 644 $(DESTDIR)$(SYSCONFDIR)/llmroute/llmroute.conf.example \
	        $(DESTDIR)$(SYSCONFDIR)/llmroute/llmroute.conf
	sed $(INSTALL_SED) doc/llmroute.8 >$(DESTDIR)$(MAN8DIR)/llmroute.8
	sed $(INSTALL_SED) packaging/llmroute.service >$(DESTDIR)$(UNITDIR)/llmroute.service
	sed $(INSTALL_SED) packaging/llmroute.logrotate >$(DESTDIR)$(LOGROTATEDIR)/llmroute
	chmod 644 $(DESTDIR)$(SYSCONFDIR)/llmroute/llmroute.conf.example $(DESTDIR)$(MAN8DIR)/llmroute.8 \
	    $(DESTDIR)$(UNITDIR)/llmroute.service $(DESTDIR)$(LOGROTATEDIR)/llmroute

# Leaves llmroute.conf when the operator changed it, as dpkg keeps a
# conffile; removes it when it is still the example.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/llmroute $(DESTDIR)$(MAN8DIR)/llmroute.8 \
	    $(DESTDIR)$(UNITDIR)/llmroute.service $(DESTDIR)$(LOGROTATEDIR)/llmroute
	if cmp -s $(DESTDIR)$(SYSCONFDIR)/llmroute/llmroute.conf \
	        $(DESTDIR)$(SYSCONFDIR)/llmroute/llmroute.conf.example; then \
	    rm -f $(DESTDIR)$(SYSCONFDIR)/llmroute/llmroute.conf; fi
	rm -f $(DESTDIR)$(SYSCONFDIR)/llmroute/llmroute.conf.example
	rmdir $(DESTDIR)$(SYSCONFDIR)/llmroute 2>/dev/null || true
