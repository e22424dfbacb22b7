# cemlib: two commands for a newcomer (`make reproduce`, `make test`); each builds .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= smoke

.PHONY: reproduce reference test test-all lint lab kernel tensorboard report bench gpu-check gpu-study gpu-bench clean-venv

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

# The profile's replicated reference (5 training seeds, with the authors' per-image DES window rule trained
# beside the study's), written to data_manifest/ for `cem check` and the report; commit what it writes.
REFERENCE_SET := --set replicates=5 --set des_window_ablation=image
reference: $(STAMP)
	$(BIN)/cem reproduce --profile $(PROFILE) $(REFERENCE_SET)
	$(BIN)/cem check --profile $(PROFILE) $(REFERENCE_SET) --make-reference

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

test-all: $(STAMP)
	$(BIN)/pytest -q -m ""

lint: $(STAMP)
	$(BIN)/ruff check .

# JupyterLab at the project root (notebooks/, reports/ and the executed notebooks within reach), with
# the venv's own kernel installed under the name the notebooks ask for, `cemlib`; as root too.
KERNEL_NAME := cemlib
KERNEL_SPEC := $(VENV)/share/jupyter/kernels/$(KERNEL_NAME)/kernel.json
KERNEL_ARGS := install --sys-prefix --name $(KERNEL_NAME) --display-name "Python (cemlib)"
USER_ID     ?= $(shell id -u)
LAB_ARGS    ?= --ServerApp.root_dir=$(CURDIR) $(if $(filter 0,$(USER_ID)),--allow-root)

$(KERNEL_SPEC): $(STAMP)
	$(BIN)/python -m ipykernel $(KERNEL_ARGS)

kernel: $(KERNEL_SPEC)

lab: $(KERNEL_SPEC)
	$(BIN)/jupyter lab $(LAB_ARGS)

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

# The whole study on one CUDA GPU at paper scale (notebooks/profiles/gpu_study.yaml: the paper's model
# at 512 x 256, bf16, channels_last, compiled; a 160-patient synthetic cohort, few epochs; sized for
# 8 minutes of an H100/H200): all six notebooks through papermill, tables, figures, report.html/pdf,
# environment.json and the run's log into reports/gpu_study/ (under GPU_STUDY_WORKDIR when given).
# Without a venv: make gpu-study CEM="python3 -m cemlib.cli". A dry run on a CPU, into a scratch folder:
# make gpu-study CEM="python3 -m cemlib.cli" GPU_STUDY_WORKDIR=/tmp/gpu_study_dry GPU_STUDY_EXTRA="\
#   --set device=cpu --set model.width=0.0625 --set model.global_pool=true --set model.head=[64,32,16] \
#   --set preprocess.size=[64,32] --set data.synth.patients=24 --set data.synth.scale=0.08 \
#   --set external.inbreast.synth.patients=8 --set external.cddcesm.synth.patients=8 \
#   --set train.amp=false --set train.channels_last=false --set train.compile=false --set train.workers=0"
GPU_STUDY_WORKDIR ?=
GPU_STUDY_EXTRA   ?=
GPU_STUDY_REPORTS  = $(or $(GPU_STUDY_WORKDIR),.)/reports/gpu_study

gpu-study: $(if $(filter $(BIN)/cem,$(CEM)),$(STAMP))
	mkdir -p $(GPU_STUDY_REPORTS)
	@# The log keeps the terminal's progress (every epoch, every step's seconds); the exit status is cem's.
	@# Settings that differ from the profile (GPU_STUDY_EXTRA) give a run its own data and runs folders;
	@# its reports stay in reports/gpu_study, beside run.log.
	{ $(CEM) reproduce --profile gpu_study $(if $(GPU_STUDY_WORKDIR),--workdir $(GPU_STUDY_WORKDIR)) \
		--set preprocess.workers=$(shell nproc) --set reports=reports/gpu_study $(GPU_STUDY_EXTRA); \
		echo $$? > $(GPU_STUDY_REPORTS)/.status; } \
		2>&1 | tee $(GPU_STUDY_REPORTS)/run.log
	@status=$$(cat $(GPU_STUDY_REPORTS)/.status); rm -f $(GPU_STUDY_REPORTS)/.status; exit $$status

# Training-step levers toward 1,500 views/s on a CUDA GPU, paper model at 512 x 256, batch 8 exams:
# the eager variants, torch.compile in each mode of GPU_BENCH_MODES (reduce-overhead = CUDA graphs),
# a loss read back every step (.item(), as the training loop's checks do) and deterministic kernels
# beside the fastest ones, a one-step torch.profiler summary of the compiled step (top kernels, time per
# kind), views/s and TFLOP/s against the GPU's peak, the loader with 0 and 8 workers. Results in
# $(GPU_BENCH_OUT). max-autotune tunes every convolution (minutes): split a short device slice with
# GPU_BENCH_MODES="default reduce-overhead" (about 4 minutes), then GPU_BENCH_MODES="max-autotune
# max-autotune-no-cudagraphs" GPU_BENCH_LEVERS= (the host-sync and deterministic rows only once).
GPU_BENCH_OUT   ?= reports/bench/gpu_bench
GPU_BENCH_DATA  ?= data/gpu_bench
GPU_BENCH_MODES ?= default reduce-overhead max-autotune max-autotune-no-cudagraphs
GPU_BENCH_TAG   ?= $(firstword $(GPU_BENCH_MODES))
GPU_BENCH_LEVERS ?= --host-sync --deterministic
GPU_BENCH_SET   ?= --profile paper --set data.root=$(GPU_BENCH_DATA) --set data.manifest=$(GPU_BENCH_DATA)/manifest \
	--set preprocess.cache=$(GPU_BENCH_DATA)/cache --set data.synth.patients=40 \
	--set preprocess.workers=$(shell nproc) --set device=$(GPU_DEVICE) $(GPU_EXTRA)

gpu-bench: $(if $(filter $(BIN)/cem,$(CEM)),$(STAMP))
	mkdir -p $(GPU_BENCH_OUT)
	$(CEM) bench train $(GPU_BENCH_SET) --device $(GPU_DEVICE) $(GPU_STEPS) --compile-modes $(GPU_BENCH_MODES) \
		$(GPU_BENCH_LEVERS) --torch-profile $(GPU_BENCH_OUT)/profile_$(GPU_BENCH_TAG) \
		--json $(GPU_BENCH_OUT)/bench_train_$(GPU_BENCH_TAG).json
	$(CEM) bench preprocess $(GPU_BENCH_SET) --json $(GPU_BENCH_OUT)/bench_preprocess.json

clean-venv:
	rm -rf $(VENV)
