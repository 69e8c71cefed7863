# Thin wrapper over CMake. The two commands a user needs:
#   make run    install dependencies if missing, build, train the demo model once, serve it
#               with emberd on 127.0.0.1:50051
#   make test   install dependencies if missing, build with ASan+UBSan, run the whole suite
# Also: make build (release binaries in build/release), make bench, make clean.

BUILD      ?= build/release
TEST_BUILD ?= build/test
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
MAKEFLAGS  += --no-print-directory

.PHONY: all deps build test run bench clean

all: build

deps:
	@deploy/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DEMBER_TESTS=OFF >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

test: deps
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMBER_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_BUILD) -j$(JOBS)
	@cd $(TEST_BUILD) && ctest --output-on-failure -j$(JOBS)

run: build
	@deploy/demo.sh $(BUILD)

bench: build
	@$(BUILD)/ember bench infer
	@$(BUILD)/ember bench train --steps 5

clean:
	rm -rf build demo
