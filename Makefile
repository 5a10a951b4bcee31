# One command per job, each doing its own set-up on a fresh machine:
#   make test    venv, pinned dependencies, build camfast._C (CUDA kernels too when a toolkit
#                is found), run the tests
#   make train   the same set-up, then a short cooperative training run on the built-in data
#   make bench   the loss benchmark on this machine
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.camfast-deps

.PHONY: test train bench build deps clean

$(STAMP): requirements-ci.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-ci.txt
	touch $(STAMP)

deps: $(STAMP)

build: deps
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	$(PY) -c "import camfast, json; print(json.dumps(camfast.build_info()))"

test: build
	$(PY) -m pytest -q

train: build
	$(PY) -m camfast.train --preset quick --out runs/quick --overwrite

bench: build
	$(PY) benchmarks/bench_loss.py

clean:
	rm -rf build camfast/_C*.so *.egg-info
