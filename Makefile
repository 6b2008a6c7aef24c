# The two commands of the README, and what they need. Everything installs from PyPI and Debian
# into a project-local virtual environment; torch is pinned to the CPU build on this machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
CPP_BUILD := build/cpp-tests
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# cmake, ninja and ctest come from the venv, so the build needs nothing preinstalled but Python.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test test-cpp test-python test-docs docs bench lint setup system-deps clean

## demo: train the demo model, write a TensorBoard run and a report (the README's main job)
demo: setup
	$(VENV)/bin/layerscope demo

## test: every test, C++ (GoogleTest through ctest), Python (pytest) and the docs build
test: lint test-cpp test-python test-docs

test-cpp: setup system-deps
	cmake -S . -B $(CPP_BUILD) -G Ninja -DLAYERSCOPE_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release
	cmake --build $(CPP_BUILD) -j $(JOBS)
	ctest --test-dir $(CPP_BUILD) --output-on-failure -j $(JOBS)

test-python: setup system-deps
	$(PY) -m pytest

## test-docs / docs: build the docs site (gallery rendered on the fly), warnings as errors
test-docs docs: setup
	$(PY) -m sphinx -E -W --keep-going -q -b html docs build/docs

## bench: the benchmarks of benchmarks/, each printing ratios measured side by side
bench: setup
	$(PY) -m pip install --quiet --disable-pip-version-check ".[bench]"
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_overhead.py
	$(PY) benchmarks/bench_gpu.py

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

setup: $(VENV)/.installed

# Reinstall whenever the package's sources or build files change.
$(VENV)/.installed: pyproject.toml CMakeLists.txt cpp/CMakeLists.txt \
    $(shell find cpp/include cpp/extensions cpp/bindings src -type f 2>/dev/null)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet --disable-pip-version-check ninja cmake
	$(PY) -m pip install --quiet --disable-pip-version-check ".[dev]"
	touch $@

# From Debian, each installed only when missing: GoogleTest (libgtest-dev) for the C++ tests,
# chromium for the tests that look at TensorBoard, the docs site and the HTML report.
system-deps:
	@missing=""; \
	if [ ! -f /usr/lib/x86_64-linux-gnu/cmake/GTest/GTestConfig.cmake ] && \
	   [ ! -f /usr/lib/aarch64-linux-gnu/cmake/GTest/GTestConfig.cmake ] && \
	   [ ! -f /usr/lib/cmake/GTest/GTestConfig.cmake ]; then missing=" libgtest-dev"; fi; \
	if ! command -v chromium >/dev/null 2>&1; then missing="$$missing chromium"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing from Debian:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

clean:
	rm -rf build $(VENV)
