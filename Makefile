# qkm top-level make: thin wrapper over CMake/CTest.
#   make          build (build/)
#   make check    install deps, build with -Werror, run every test; then the
#                 static analysers (make lint), the unit tests under
#                 ASan+UBSan (build-asan/), the ETSI 014 system test against
#                 a ThreadSanitizer build (build-tsan/), then each fuzz
#                 target briefly (build-fuzz/); test_metrics runs promtool,
#                 unpacked from Debian's prometheus into build/tools/
#                 (QKM_PROMTOOL=1 installs the package, =0 skips it)
#   make check-sanitize-system
#                 every system test against an ASan+UBSan build of qkm
#                 (build-asan-sys/); any sanitizer report fails it
#                 (scripts/sanitized-system; not part of make check)
#   make check-tsan-system
#                 every system test against the ThreadSanitizer build
#                 (build-tsan/); the same (not part of make check)
#   make lint     clang-tidy (.clang-tidy) and cppcheck over src/, any
#                 finding fails (scripts/lint; 1-2 minutes on 2 cores)
#   make demo     install deps, build, start a local QKD network and show it
#   make fuzz     run each fuzz target (or those in FUZZ_TARGETS, e.g.
#                 "config relay") for FUZZ_SECONDS (default 600), JOBS
#                 targets at a time; every run adds its execs to
#                 build-fuzz/fuzz-totals.tsv
#   make fuzz-totals  per target, the runs, seconds, execs and crashes of
#                 that log so far
#   make bench    run the benchmarks in bench/ with their baselines
#                 (BENCH_ARGS="--seconds 10" is passed to each), then print
#                 the ratio table: bench/results/<date>.json, .md and .svg
#                 (the plot); bench/README.md
#   make install  build, then install under PREFIX (default /usr/local) into
#                 DESTDIR (default /): bin/qkm, the systemd units, examples in
#                 /etc/qkm, docs, man pages and the demo (share/qkm/demo,
#                 runs the installed binary; docs/operations.md)
#   make deb      build/qkm_VERSION_ARCH.deb with CPack (prefix /usr)
#   make soak     build, then crash injection for ROUNDS rounds (default 100;
#                 SEED=S replays a run, TOPOLOGY=line5 for the 5-node line):
#                 tests/fault/crash.sh; `make check` runs 4 rounds of it
#                 (tests/system/test_crash_relay.sh)
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 600
FUZZ_CHECK_SECONDS ?= 10
FUZZ_TARGETS ?=
ROUNDS ?= 100
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all deps build check check-unit check-asan check-tsan check-fuzz lint fuzz fuzz-totals demo bench soak \
	install deb clean check-sanitize-system check-tsan-system

all: build

deps:
	@./scripts/install-deps

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQKM_WERROR=ON >/dev/null
	@cmake --build build -j $(JOBS)

check: build
	@mkdir -p build/tmp
	cd build && ctest --output-on-failure -j $(JOBS)
	@$(MAKE) --no-print-directory lint check-asan check-tsan check-fuzz

# Before the sanitizer builds: 1-2 minutes, nothing to build, and a finding
# names its line, so it fails faster than they do.
lint: deps
	@JOBS=$(JOBS) ./scripts/lint build-lint

check-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DQKM_WERROR=ON -DQKM_SANITIZE=ON \
		-DQKM_UNIT_ONLY=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@mkdir -p build-asan/tmp
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS) -L unit

check-tsan: deps
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQKM_WERROR=ON -DQKM_TSAN=ON \
		>/dev/null
	@cmake --build build-tsan -j $(JOBS) --target qkm
	@mkdir -p build-tsan/tmp
	QKM=$(CURDIR)/build-tsan/qkm TMPDIR=$(CURDIR)/build-tsan/tmp \
		TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1" \
		tests/system/test_etsi014.sh

# The whole system suite against sanitized daemons and tools: every
# process's reports go to BUILD/sanitizer/ (log_path), so a finding in a
# daemon fails the run even when no test noticed it.
check-sanitize-system: deps
	@cmake -S . -B build-asan-sys -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQKM_WERROR=ON \
		-DQKM_SANITIZE=ON >/dev/null
	@cmake --build build-asan-sys -j $(JOBS) --target qkm
	@./scripts/sanitized-system build-asan-sys asan -j $(JOBS)

check-tsan-system: deps
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQKM_WERROR=ON -DQKM_TSAN=ON \
		>/dev/null
	@cmake --build build-tsan -j $(JOBS) --target qkm
	@./scripts/sanitized-system build-tsan tsan -j $(JOBS)

build-fuzz: deps
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DQKM_FUZZ=ON \
		-DQKM_UNIT_ONLY=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS)

check-fuzz: build-fuzz
	@JOBS=$(JOBS) ./scripts/run-fuzz build-fuzz $(FUZZ_CHECK_SECONDS)

fuzz: build-fuzz
	@JOBS=$(JOBS) ./scripts/run-fuzz build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-totals:
	@./scripts/run-fuzz --totals build-fuzz

demo: build
	@./scripts/demo

soak: build
	@mkdir -p build/tmp
	QKM_TEST_TMP=$(CURDIR)/build/tmp ROUNDS=$(ROUNDS) $(if $(SEED),SEED=$(SEED)) \
		$(if $(TOPOLOGY),TOPOLOGY=$(TOPOLOGY)) tests/fault/crash.sh

bench: build
	@QKM_BENCH_DEPS=1 ./scripts/install-deps
	@./bench/run-all $(BENCH_ARGS)

# The prefix is given at install time (the units are written for it), so
# build/ keeps its own configuration and `make deb` does not change it.
install: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQKM_WERROR=ON >/dev/null
	@cmake --build build -j $(JOBS) --target qkm
	DESTDIR=$(DESTDIR) cmake --install build --prefix $(PREFIX)

# The package's prefix is /usr (CPACK_PACKAGING_INSTALL_PREFIX).
deb: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQKM_WERROR=ON >/dev/null
	@cmake --build build -j $(JOBS) --target qkm
	cd build && cpack -G DEB
	@ls build/qkm_*.deb

clean:
	rm -rf build build-asan build-asan-sys build-tsan build-fuzz build-lint
