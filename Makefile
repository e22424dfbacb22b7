# cemlib: two commands for a newcomer (`make reproduce`, `make test`); each builds .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= smoke

.PHONY: reproduce test test-all lint lab report bench clean-venv

$(STAMP): pyproject.toml
	@# The PDF report renders with WeasyPrint, which needs Pango from the system.
	@ldconfig -p | grep -q libpangoft2-1.0 || (apt-get update -qq && apt-get install -y -qq libpango-1.0-0 libpangoft2-1.0-0) \
		|| echo "warning: install Pango (libpango-1.0-0 libpangoft2-1.0-0) for the PDF report"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch/torchvision pinned to the builds this machine serves from local disk (no multi-GB download).
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
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
	$(BIN)/cem reproduce --profile $(PROFILE) --report-only

bench: $(STAMP)
	$(BIN)/cem bench all

clean-venv:
	rm -rf $(VENV)
