# Thin wrapper over CMake. The two commands a user needs:
#   make run    install dependencies if missing, build, train the demo model once, serve it
#               with emberd on 127.0.0.1:50051
#   make test   install dependencies if missing, build with ASan+UBSan, run the whole suite
# Also: make build (release binaries in build/release), make bench, make clean,
#   make install  build, then install emberd, ember and libember_client (the C client library:
#               lib/libember_client.so, include/ember/client.h, lib/pkgconfig/ember-client.pc)
#               into PREFIX (default /usr/local), under DESTDIR when given; docs/client-c.md, and
#   make tsan   build with ThreadSanitizer in build/tsan and run the unit and server
#               integration tests there; fails on any report (tests/tsan.supp lists the
#               suppressed third-party races)
#   make fuzz   build the libFuzzer targets with clang into build/fuzz and run each for
#               FUZZ_RUNS executions (FUZZ_TARGETS picks some, FUZZ_SECONDS caps each;
#               docs/fuzzing.md). make test smokes them; FUZZ_SMOKE=OFF leaves that out.

BUILD      ?= build/release
TEST_BUILD ?= build/test
TSAN_BUILD ?= build/tsan
FUZZ_BUILD ?= build/fuzz
FUZZ_RUNS  ?= 100000
FUZZ_SECONDS ?= 0
FUZZ_TARGETS ?=
FUZZ_SMOKE ?= ON
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX     ?= /usr/local
MAKEFLAGS  += --no-print-directory

.PHONY: all deps build install test tsan run bench fuzz clean

all: build

deps:
	@deploy/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DEMBER_TESTS=OFF >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

install: build
	@DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

test: deps
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMBER_SANITIZE=ON \
	  -DEMBER_FUZZ_SMOKE=$(FUZZ_SMOKE) >/dev/null
	@cmake --build $(TEST_BUILD) -j$(JOBS)
	@cd $(TEST_BUILD) && ctest --output-on-failure -j$(JOBS)

# Reports go to files (TSAN_OPTIONS log_path, tests/CMakeLists.txt), so a race in an emberd
# that a test kills, or in a CLI run whose stderr a test ignores, still fails the run.
tsan: deps
	@cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMBER_TSAN=ON >/dev/null
	@cmake --build $(TSAN_BUILD) -j$(JOBS)
	@rm -rf $(TSAN_BUILD)/tsan-reports && mkdir -p $(TSAN_BUILD)/tsan-reports
	@cd $(TSAN_BUILD) && ctest --output-on-failure -j$(JOBS) -R '^(test_|integration_)'; rc=$$?; \
	  reports=$$(ls tsan-reports); \
	  if [ -n "$$reports" ]; then cat tsan-reports/*; \
	    echo "ThreadSanitizer reports in $(TSAN_BUILD)/tsan-reports: $$reports"; exit 1; fi; \
	  exit $$rc

run: build
	@deploy/demo.sh $(BUILD)

fuzz: deps
	@fuzz/build.sh $(FUZZ_BUILD) $(JOBS)
	@FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_TARGETS)

bench: build
	@$(BUILD)/ember bench infer
	@$(BUILD)/ember bench train --steps 5

clean:
	rm -rf build demo
