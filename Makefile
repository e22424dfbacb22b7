# cemlib: two commands for a newcomer (`make reproduce`, `make test`); each builds .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= smoke

.PHONY: reproduce test test-all lint lab report bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch/torchvision pinned to the builds this machine serves from local disk (no multi-GB download).
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name cemlib --display-name "cemlib (Python 3.11)" >/dev/null
	touch $(STAMP)

reproduce: $(STAMP)
	$(BIN)/cem reproduce --profile $(PROFILE)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

test-all: $(STAMP)
	$(BIN)/pytest -q -m ""

lint: $(STAMP)
	$(BIN)/ruff check .

lab: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,lab]'
	$(BIN)/jupyter lab notebooks/

report: $(STAMP)
	$(BIN)/cem report --profile $(PROFILE)

bench: $(STAMP)
	$(BIN)/cem bench all

clean-venv:
	rm -rf $(VENV)
