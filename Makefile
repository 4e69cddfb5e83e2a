# One-command setup, tests, demo and benchmarks. Needs only python3.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Two threads for the benchmarks (both cores of a small machine); `make test` runs two
# one-thread workers instead and `make demo` one thread.
export OMP_NUM_THREADS ?= 2
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test demo bench bench-gpu lint clean

setup: $(STAMP)

# The CPU build of torch is installed first, by exact version, so that nothing
# later pulls a multi-GB CUDA build; litdata is pinned to a release that does
# not require torchvision (see README, "Dependencies").
$(STAMP): pyproject.toml setup.py codeclm/_native.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip check
	$(BIN)/python -c "from codeclm.generation import native as n; print('native decode kernels:', n.isa() or 'not built (no C compiler?); torch kernels run instead')"
	touch $(STAMP)

# Two pytest-xdist workers with one thread each (whole files per worker, the longest
# first: tests/conftest.py) keep both cores busy.
test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile \
		--no-loadscope-reorder tests

# The bundled models are tiny: one thread is faster than two for them.
demo: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m codeclm_apps.demo

bench: setup
	$(BIN)/python -m bench

# The prepared GPU check (training MFU, sampler vs generate, FSDP2 fit + export);
# prints "skipped" without CUDA. Install a CUDA torch in .venv first on a GPU machine.
bench-gpu: setup
	$(BIN)/python -m bench.gpu

lint: setup
	$(BIN)/ruff check codeclm codeclm_apps jpeglm avclm data_tools tests bench

clean:
	rm -rf $(VENV) build *.egg-info codeclm/*.so
