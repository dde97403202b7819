# The two commands a fresh machine needs: `make demo` (the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install demo test test-all reproduce reproduce-short clean

$(BIN)/ssm: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,audio]'
	touch $(BIN)/ssm

install: $(BIN)/ssm

demo: $(BIN)/ssm
	$(BIN)/ssm run ablation=init $(ARGS)
	$(BIN)/ssm table

test: $(BIN)/ssm
	$(BIN)/python -m pytest -q $(ARGS)

clean:
	rm -rf outputs .pytest_cache
