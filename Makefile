# The two commands a fresh machine needs: `make demo` (the main job) and `make test`.
# The interpreter the venv is made from: CI tests the lowest and the highest supported Python
# (pyproject's requires-python, 3.10, and the newest) with e.g. `make test PY=python3.10 VENV=.venv-3.10`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

ABLATIONS ?= init init_perturb disc B real kernel
# reproduce-short: these grids; OPTIONAL ones only where their data is present (`ssm data present`)
SHORT_DATASETS ?= scifar lra_image listops lra_text pathfinder
FULL_DATASETS ?= $(SHORT_DATASETS) pathx
OPTIONAL_DATASETS ?= sc35 lra_retrieval
JOBS ?= 4
# runs of a grid that differ only in their SSM cores train as one network (launcher.pack; auto:
# as many as fit the GPU, halved on an out-of-memory)
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
# SC35 and Retrieval run only where their data is present (data_dir: $$SSM_DATA or ./data).
reproduce: PRESET = paper
reproduce: DATASETS = $(FULL_DATASETS)
reproduce-short: PRESET = short
reproduce-short: DATASETS = $(SHORT_DATASETS)
reproduce reproduce-short: $(BIN)/ssm
	@for d in $(DATASETS) $(OPTIONAL_DATASETS); do \
	  case " $(OPTIONAL_DATASETS) " in *" $$d "*) \
	    if ! $(BIN)/ssm data present $$d > /dev/null; then \
	      echo "skipping $$d: its data is not present (ssm data where $$d says where to put it)"; continue; fi;; esac; \
	  for a in $(ABLATIONS); do \
	  $(BIN)/ssm run ablation=$$a dataset=$$d preset=$(PRESET) launcher=local launcher.jobs=$(JOBS) launcher.pack=$(PACK) $(ARGS) || exit $$?; \
	  mkdir -p experiments/results/$$d-$(PRESET); \
	  $(BIN)/ssm table outputs --ablation $$a --dataset $$d --preset $(PRESET) --format json --out experiments/results/$$d-$(PRESET)/$$a.json; \
	done; \
	$(BIN)/ssm table outputs --dataset $$d --preset $(PRESET) --format md --out experiments/results/$$d-$(PRESET)/table.md; done

clean:
	rm -rf outputs .pytest_cache
