# One command per job, each doing its own set-up on a fresh machine:
#   make test    venv, pinned dependencies, build camfast._C (CUDA kernels too when a toolkit
#                is found), run the tests
#   make train   the same set-up, then a short cooperative training run on the built-in data
#                and its scorecard (edit accuracy, change outside the edited region, CAM IoU)
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

# make train: the fixed attribute classifier (trained once, then reused from .cache/), a short
# cooperative AttGAN run on the built-in synthetic faces, then camfast-eval's scorecard.
CLASSIFIER := .cache/classifier-synthetic-2000-64.pt
train: build
	test -f $(CLASSIFIER) || $(PY) -m camfast.cli.train_classifier --synthetic-images 2000 --image-size 64 \
	    --seed 0 --epochs 6 --threads 2 --out $(CLASSIFIER)
	$(PY) -m camfast.cli.train --preset quick --out runs/quick --overwrite --set eval_classifier=$(CLASSIFIER)
	$(PY) -m camfast.cli.eval --run runs/quick --classifier $(CLASSIFIER) --limit 100 --n-samples 4 \
	    --threads 2 --no-progress --scorecard
	@echo "sample grid: $$(ls runs/quick/samples/*.png | tail -n 1); evaluation sheet: runs/quick/samples.png"

bench: build
	$(PY) benchmarks/bench_loss.py

clean:
	rm -rf build camfast/_C*.so *.egg-info
