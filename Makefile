# cemlib: two commands for a newcomer (`make reproduce`, `make test`); each builds .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= smoke

.PHONY: reproduce test test-all lint lab tensorboard report bench gpu-check clean-venv

$(STAMP): pyproject.toml requirements.lock
	@# The PDF report renders with WeasyPrint, which needs Pango from the system.
	@ldconfig -p | grep -q libpangoft2-1.0 || (apt-get update -qq && apt-get install -y -qq libpango-1.0-0 libpangoft2-1.0-0) \
		|| echo "warning: install Pango (libpango-1.0-0 libpangoft2-1.0-0) for the PDF report"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The exact versions of requirements.lock (torch/torchvision: the builds this machine serves from
	# local disk, no multi-GB download), then cemlib itself on top without touching them.
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
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
	$(BIN)/jupyter lab notebooks/

# Training curves of a profile's models (loss, validation AUC, learning rate), live while a run trains.
tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir runs/$(PROFILE)/models

report: $(STAMP)
	$(BIN)/cem reproduce --profile $(PROFILE) --report-only

bench: $(STAMP)
	$(BIN)/cem bench all

# Paper-size checks for a CUDA machine, on a small synthetic cohort at 512 x 256: training-step speed
# (fp32/bf16, contiguous/channels_last, torch.compile, beside the authors' way), loader speed, and one
# epoch of each training stage through `cem train`. Results in $(GPU_OUT). Where no venv can be built,
# name an interpreter that has torch: make gpu-check CEM="python3 -m cemlib.cli". A dry run on a CPU:
# make gpu-check GPU_DEVICE=cpu GPU_DATA=data/gpu_dry GPU_RUNS=runs/gpu_dry GPU_OUT=/tmp/gpu_dry \
#   GPU_EXTRA="--set model.width=0.0625 --set model.global_pool=true --set data.synth.patients=40"
CEM        ?= $(BIN)/cem
GPU_DEVICE ?= cuda
GPU_OUT    ?= reports/bench/gpu_check
GPU_DATA   ?= data/gpu_check
GPU_RUNS   ?= runs/gpu_check
GPU_SET    ?= --profile paper --set data.root=$(GPU_DATA) --set data.manifest=$(GPU_DATA)/manifest \
	--set preprocess.cache=$(GPU_DATA)/cache --set runs=$(GPU_RUNS) --set data.synth.patients=200 \
	--set preprocess.workers=$(shell nproc) --set device=$(GPU_DEVICE) $(GPU_EXTRA)
GPU_STEPS  ?= --steps 10 --warmup 2

gpu-check: $(if $(filter $(BIN)/cem,$(CEM)),$(STAMP))
	mkdir -p $(GPU_OUT)
	$(CEM) bench preprocess $(GPU_SET) --json $(GPU_OUT)/bench_preprocess.json
	$(CEM) bench train $(GPU_SET) --device $(GPU_DEVICE) --compile $(GPU_STEPS) --json $(GPU_OUT)/bench_train.json
	@# Train from scratch: an earlier run (a CPU dry run, say) would be resumed or found finished.
	rm -rf $(GPU_RUNS)
	$(CEM) train $(GPU_SET) --set train.stage1_epochs=1 --set train.stage2_epochs=1
	cp $(GPU_RUNS)/models/cem_stage1/log.csv $(GPU_OUT)/stage1_log.csv
	cp $(GPU_RUNS)/models/cem_mf_concat/stage2/log.csv $(GPU_OUT)/stage2_log.csv

clean-venv:
	rm -rf $(VENV)
