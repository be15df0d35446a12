# U-Net depth x dimension ablation suite. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
, := ,
# Tests and the demo never talk to a W&B server.
export WANDB_SILENT ?= true

.DEFAULT_GOAL := help
.PHONY: help install ffmpeg chromium fluidsynth soundfont test test-slow test-slurm lint bench

help: ## List every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

# $(1): the command; $(2): what to do when it is missing and apt cannot install it;
# $(3): the apt package (default: the command); $(4): a test that it is present
# (default: the command is on PATH), for packages that install a file, not a command.
define apt_install
	@$(if $(4),$(4),command -v $(1) >/dev/null) && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $(or $(3),$(1)) with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(or $(3),$(1)) >/dev/null; \
	else \
		$(2); \
	fi
endef
# Debian's General MIDI SoundFont (fluid-soundfont-gm, MIT licence), which the rendered
# dataset plays its instruments from.
SOUNDFONT := /usr/share/sounds/sf2/FluidR3_GM.sf2

ffmpeg: ## Install ffmpeg (needed for .stem.mp4) through apt when root, else say how
	$(call apt_install,ffmpeg,echo "ffmpeg is missing: install it (sudo apt-get install ffmpeg$(,) or conda/brew install ffmpeg)$(,) then run make again."; exit 1)

chromium: ## Install headless Chromium (the report page's browser test) through apt when root
	$(call apt_install,chromium,echo "chromium is missing: the report page's browser test skips; sudo apt-get install chromium runs it.")

# The rendered dataset loads FluidSynth's library (datamodules/synth.py), which Debian's
# fluidsynth brings; present when Python finds it as the suite does.
FLUIDSYNTH_LIBRARY := $(PYTHON) -c 'import sys; import ctypes.util; sys.exit(ctypes.util.find_library("fluidsynth") is None)'

fluidsynth: ## Install FluidSynth (its library renders the demo's dataset) through apt when root, else say how
	$(call apt_install,fluidsynth,echo "libfluidsynth is missing: install it (sudo apt-get install fluidsynth$(,) or conda/brew install fluidsynth)$(,) then run make again."; exit 1,fluidsynth,$(FLUIDSYNTH_LIBRARY))

soundfont: ## Install the General MIDI SoundFont FluidR3_GM (fluid-soundfont-gm) through apt when root
	$(call apt_install,soundfont,echo "$(SOUNDFONT) is missing: sudo apt-get install fluid-soundfont-gm$(,) or set ABLATION_SOUNDFONT=/path/to/a/GM.sf2"; [ -n "$$ABLATION_SOUNDFONT" ],fluid-soundfont-gm,[ -f $(SOUNDFONT) ])

install: $(STAMP) ffmpeg chromium fluidsynth soundfont ## Create .venv and install the suite with its test extras

test: install ## Run the default test suite (offline, CPU, under 15 minutes)
	WANDB_MODE=offline $(BIN)/pytest

test-slow: install ## Run the slow tests too (real training, full evaluations)
	WANDB_MODE=offline $(BIN)/pytest -m "slow or not slow"

test-slurm: install ## Slow: a real single-node Slurm (root; apt slurm-wlm, munge): demo array of 4, one task preempted
	WANDB_MODE=offline $(BIN)/pytest -m slow tests/test_distributed.py -k real_slurm -s

lint: install ## ruff check and format check
	$(BIN)/ruff check ablation lightning_modules datamodules tests
	$(BIN)/ruff format --check ablation lightning_modules datamodules tests

bench: install ## Side-by-side benchmarks printing ratios (BENCH="data bsseval train scale", QUICK=1, F90=clone, SCALE=0.25)
	$(BIN)/ablation bench $(BENCH) $(if $(QUICK),--quick) $(if $(F90),--f90 $(F90)) $(if $(SCALE),--scale $(SCALE))

# SWEEP is a sweep's name or its YAML path, the same for every target (sweep, report);
# unset, `make sweep` and `make report` take depth_dimension.
# WANDB=0: no W&B at all (sweep: --offline; eval, report: --no-wandb).
NO_WANDB = $(filter 0 off no false,$(WANDB))
# SLURM=1: a job array instead (PARTITION, ACCOUNT, GPUS_PER_TASK, TIME, SLURM_ARGS="--mem=32G ...", DRY_RUN=1)
SLURM_FLAGS = --slurm $(if $(PARTITION),--partition $(PARTITION)) $(if $(ACCOUNT),--account $(ACCOUNT)) \
	$(if $(GPUS_PER_TASK),--gpus-per-task $(GPUS_PER_TASK)) $(if $(TIME),--time $(TIME)) $(SLURM_ARGS) $(if $(DRY_RUN),--dry-run)
sweep: install ## Train a sweep's grid: SWEEP=depth_dimension|sweeps/x.yaml GPUS=0,1 COUNT=n ROOT=/path/musdb SEEDS=3 TUNING=runs/tune_lr WANDB=0 [SLURM=1 PARTITION=p TIME=04:00:00 DRY_RUN=1] (online with W&B credentials, else offline)
	$(BIN)/ablation sweep '$(or $(SWEEP),depth_dimension)' $(if $(GPUS),--gpus $(GPUS)) $(if $(COUNT),--count $(COUNT)) $(if $(ROOT),--root '$(ROOT)') $(if $(SEEDS),--seeds $(SEEDS)) $(if $(TUNING),--fit-arg='--run.tuning=$(TUNING)') $(if $(NO_WANDB),--offline) $(if $(SLURM),$(SLURM_FLAGS))

demo: install ## The whole pipeline on a generated rendered dataset, CPU, offline (ROOT=/path/musdb for real data: runs/demo-<data>/, results/demo-<data>/; OUT=dir)
	WANDB_MODE=offline $(BIN)/ablation demo $(if $(ROOT),--root '$(ROOT)') $(if $(OUT),--out '$(OUT)')

.PHONY: sweep demo

SUBSET ?= test
eval: install ## SiSEC evaluation: CKPT=path [ROOT=musdb, default the run's data] [SUBSET=test] [OUT=dir] [BASELINE=mixture|gain|oracle-irm] [JOBS=n] [METRICS=torch|museval] [SHIFTS=n] [BUDGETS=1] [WANDB=0]
	$(BIN)/ablation eval $(if $(CKPT),--ckpt '$(CKPT)') $(if $(ROOT),--root '$(ROOT)') --subset $(SUBSET) $(if $(OUT),--out '$(OUT)') $(if $(BASELINE),--baseline $(BASELINE)) $(if $(JOBS),--jobs $(JOBS)) $(if $(METRICS),--metrics $(METRICS)) $(if $(SHIFTS),--shifts $(SHIFTS)) $(if $(BUDGETS),--budgets) $(if $(NO_WANDB),--no-wandb)

report: install ## Comparison table and plots: SWEEP=depth_dimension|sweeps/x.yaml -> results/<sweep>/, or RUNS="runs/a runs/b" -> results/runs-a+b/ [OUT=dir] [WANDB=0]
	$(BIN)/ablation report $(if $(SWEEP),--sweep '$(SWEEP)') $(if $(RUNS),--runs $(RUNS)) $(if $(OUT),--out '$(OUT)') $(if $(NO_WANDB),--no-wandb)

.PHONY: eval report
