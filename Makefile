# The two commands a fresh machine needs: `make demo` (the main job) and `make test`.
# The interpreter the venv is made from: CI tests the lowest and the highest supported Python
# (pyproject's requires-python, 3.10, and the newest) with e.g. `make test PY=python3.10 VENV=.venv-3.10`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

ABLATIONS ?= init init_perturb disc B real kernel
REPRO_DATASETS ?= scifar sc35 listops lra_text lra_retrieval lra_image pathfinder pathx
JOBS ?= 4
# runs of a grid that differ only in their SSM cores train as one network (launcher.pack)
PACK ?= 5

.PHONY: install demo test reproduce reproduce-short clean

$(BIN)/ssm: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/ssm

install: $(BIN)/ssm

demo: $(BIN)/ssm
	$(BIN)/ssm run ablation=init $(ARGS)

test: $(BIN)/ssm
	$(BIN)/python -m pytest -q $(ARGS)

# The S4D paper's ablations at the authors' protocol (preset=paper) or cut to 10 epochs
# (preset=short), every ablation on every dataset; tables land in experiments/results/<dataset>-<preset>/.
reproduce: PRESET = paper
reproduce-short: PRESET = short
reproduce reproduce-short: $(BIN)/ssm
	@for d in $(REPRO_DATASETS); do for a in $(ABLATIONS); do \
	  $(BIN)/ssm run ablation=$$a dataset=$$d preset=$(PRESET) launcher=local launcher.jobs=$(JOBS) launcher.pack=$(PACK) $(ARGS) || exit $$?; \
	  mkdir -p experiments/results/$$d-$(PRESET); \
	  $(BIN)/ssm table outputs --ablation $$a --dataset $$d --preset $(PRESET) --format json --out experiments/results/$$d-$(PRESET)/$$a.json; \
	done; \
	$(BIN)/ssm table outputs --dataset $$d --preset $(PRESET) --format md --out experiments/results/$$d-$(PRESET)/table.md; done

clean:
	rm -rf outputs .pytest_cache
