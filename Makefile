# Every target creates the virtual environment when it is missing, so a fresh clone needs only
# `make train` or `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch/torchvision are pinned to the builds these machines hold on disk; override on others,
# e.g. `make install TORCH_SPEC="torch torchvision"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# MNIST lives in ../shared/data on the project's machines; elsewhere in ./data (see README).
SEQNETS_DATA_DIR ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data),$(CURDIR)/data)
export SEQNETS_DATA_DIR
export MPLBACKEND ?= Agg
ARGS ?=

.PHONY: venv install train test test-full wheel wheel-smoke lint format tensorboard bench \
	mnist remember binary-add report report-quick demo demo-bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: venv

## the main job: LSTM-128 on MNIST read row by row (add ARGS="..." for Hydra overrides)
train: venv
	$(PY) -m seqnets.train $(ARGS)

## the fast tier (under 3 minutes on 2 cores): unit and in-process tests and a few real
## runs, the ones marked slow skipped; two workers side by side, each taking whole files (so
## module fixtures are built once). test-full runs everything (CI does).
TEST_WORKERS ?= 2
test: venv
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope -m "not slow" $(ARGS)

test-full: venv
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope $(ARGS)

## the wheel (dist/), configs inside it (seqnets.conf); built from the checkout as it is
wheel: venv
	rm -rf build dist
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation -w dist .

## the wheel installed into a fresh virtual environment that reuses .venv's libraries (nothing
## is downloaded), then a tiny run from a folder outside the checkout (tests/test_install.py
## does more: a sweep, evaluate, predict, a user's own configs)
wheel-smoke: wheel
	set -e; smoke=$$(mktemp -d); \
	$(PY) -m venv --without-pip $$smoke/venv; \
	site=$$($$smoke/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))'); \
	$(PY) -m pip install --quiet --no-deps --no-index --target $$site dist/seqnets-*.whl; \
	$(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))' > $$site/dependencies.pth; \
	mkdir $$smoke/work; cd $$smoke/work; \
	env -u PYTHONPATH $$smoke/venv/bin/python -c \
	  "import seqnets; assert seqnets.__file__.startswith('$$site'), seqnets.__file__"; \
	env -u PYTHONPATH $$smoke/venv/bin/python -m seqnets.train debug=fast task=remember \
	  trainer=cpu hydra.run.dir=$$smoke/work/run; \
	test -f $$smoke/work/run/metrics.json; \
	rm -rf $$smoke; echo "wheel-smoke: the installed wheel trained a run"

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports --no-cache

format: venv
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

tensorboard: venv
	$(VENV)/bin/tensorboard --logdir outputs

## training throughput: seqnets against the reports' loop and a bare loop, then the design
## card's nine-run sweep end to end by launcher, grouped or not (outputs/bench/)
bench: venv
	$(PY) benchmarks/bench.py $(ARGS)
	$(PY) benchmarks/grouped_sweep.py $(GROUPED_ARGS)

## report sections: each runs (or reuses) its section's runs and writes a report holding it
mnist: venv
	$(PY) -m seqnets.report sections=[mnist] $(ARGS)

remember: venv
	$(PY) -m seqnets.report sections=[remember] $(ARGS)

binary-add: venv
	$(PY) -m seqnets.report sections=[binary_add] $(ARGS)

## the whole report: every section, 3 seeds (outputs/report/latest/report.html)
report: venv
	$(PY) -m seqnets.report $(ARGS)

## every section with tiny budgets, one seed: a smoke test of the whole pipeline
report-quick: venv
	$(PY) -m seqnets.report quick=true seeds=[0] $(ARGS)

## the demo page on http://127.0.0.1:7860 (draw a digit, add two numbers, remember a digit),
## served until Ctrl-C; e.g. ARGS="ckpt_path=outputs/runs/<run> port=8000"
demo: venv
	$(PY) -m seqnets.demo $(ARGS)

## how fast the demo answers: in headless Chromium, through its API and in process (the
## README's "How fast"; outputs/bench/); e.g. ARGS="ckpt_path=outputs/runs/<run> repeats=5"
demo-bench: venv
	$(PY) benchmarks/demo_timing.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info build dist
