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
ARGS ?=
# Hydra's glob() does not descend into experiment/mnist/, so the runs are listed here.
comma := ,
empty :=
space := $(empty) $(empty)
MNIST_RUNS := $(subst $(space),$(comma),$(sort $(patsubst conf/experiment/%.yaml,%,$(wildcard conf/experiment/mnist/*.yaml))))

.PHONY: venv install train test test-full lint format tensorboard bench mnist remember binary-add clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: venv

## the main job: LSTM-128 on MNIST read row by row (add ARGS="..." for Hydra overrides)
train: venv
	$(PY) -m seqnets.train $(ARGS)

## fast tests (slow ones skipped); test-full runs everything
test: venv
	$(PY) -m pytest -m "not slow" $(ARGS)

test-full: venv
	$(PY) -m pytest $(ARGS)

lint: venv
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

format: venv
	$(VENV)/bin/ruff check --fix src tests
	$(VENV)/bin/ruff format src tests

tensorboard: venv
	$(VENV)/bin/tensorboard --logdir outputs

## sequences per second made by the synthetic tasks' batch generators
bench: venv
	$(PY) -m seqnets.bench $(ARGS)

## report sections: one multirun sweep each over the section's experiment configs
mnist: venv
	$(PY) -m seqnets.train -m experiment=$(MNIST_RUNS) $(ARGS)

remember: venv
	$(PY) -m seqnets.train -m experiment=remember/grid $(ARGS)

binary-add: venv
	$(PY) -m seqnets.train -m experiment=binary_add/loss $(ARGS)
	$(PY) -m seqnets.train -m experiment=binary_add/train_len $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
