# k210-deploy: TF1 model -> K210 kmodel -> board, and proof that the board computes what TF computes.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The tflite converter runs `toco_from_protos`, which lives in the venv's bin/.
export PATH := $(abspath $(VENV)/bin):$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 2

# Python 3.7 (TensorFlow 1.15 needs it): `python3.7` on PATH if it runs, else pyenv's 3.7.
PYTHON37 ?= $(shell (python3.7 -c '' >/dev/null 2>&1 && command -v python3.7) || \
              ls -d $$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/3.7*/bin/python3.7 2>/dev/null | tail -n 1)

# EXAMPLE=NAME picks examples/NAME (a folder with a convert.json; its convert.json names its
# calibration images, its eval/ holds the eval images, a classifier's eval_labels.json their
# classes). The face detector keeps build/, so the README's commands stay; every other example
# builds into build/NAME.
EXAMPLES := $(sort $(patsubst examples/%/convert.json,%,$(wildcard examples/*/convert.json)))
EXAMPLE ?= face
ifeq ($(filter $(EXAMPLE),$(EXAMPLES)),)
$(error EXAMPLE=$(EXAMPLE) is not an example: use one of $(EXAMPLES))
endif
EXAMPLE_DIR := examples/$(EXAMPLE)
BUILD ?= $(if $(filter face,$(EXAMPLE)),build,build/$(EXAMPLE))

.PHONY: help setup demo ncc kmodel flash eval train-example test test-fast clean

help:
	@echo "make demo           the whole pipeline on an example model [EXAMPLE=face (default), or one of: $(filter-out face,$(EXAMPLES))]"
	@echo "make setup          create .venv (Python 3.7) with the pinned requirements"
	@echo "make ncc            ncc v0.2.0-beta4 (kmodel V4) to .venv/bin/ncc ([NCC=/path/to/ncc] [NCC_SRC=dir with build.sh]; else the release download)"
	@echo "make kmodel         freeze + BatchNorm check + tflite + nncase kmodel + report (example model) [FIRMWARE=canmv-v5|canmv|maixpy-v4|maixpy-v3]"
	@echo "make flash          kmodel + scripts to the board, verified (PORT=virtual|/dev/ttyUSB0 [BOARD=dan] [BAUD=1500000] [ADDRESS=0x300000] [METHOD=kflash|repl] [FIRMWARE=x.bin] [BOARD_PROFILE=maixpy-v4: the virtual board's firmware])"
	@echo "make eval           board vs host TensorFlow over serial (PORT=virtual, /dev/ttyUSB0, socket://h:p) [BOARD_PROFILE=...]"
	@echo "make train-example  retrain the example model [EXAMPLE=...] (face <= 15 min on 2 cores, the others a few minutes)"
	@echo "make micropython    the board's interpreter (MicroPython 1.11, 32-bit floats) for the conformance tests (MICROPY_SRC=DIR with a build.sh, else cloned)"
	@echo "make test           run the test suite (what CI runs)"
	@echo "make test-fast      the suite without the slow end-to-end tests"
	@echo "make soak           serial eval through 20,000 faulty frames on virtual boards (FRAMES=N)"
	@echo "make bench          link, make kmodel overhead, fidelity, flashing -> bench/results.json + the table in docs/bench.md (~23 min on 2 cores; QUICK=1: <= 3 min)"

setup: $(STAMP)

$(STAMP): requirements.txt
	@test -n "$(PYTHON37)" || { echo "error: Python 3.7 not found: install it (pyenv install 3.7.16) or pass PYTHON37=/path/to/python3.7" >&2; exit 2; }
	$(PYTHON37) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade "pip<24"
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

demo: kmodel flash eval

# ncc (kmodel V4 for stock MaixPy): NCC=an existing binary, NCC_SRC=a folder with build.sh,
# else the official release archive; nothing happens when .venv/bin/ncc is already v0.2.
ncc: $(STAMP)
	$(PY) host/ncc_install.py --dest $(VENV)/bin/ncc $(if $(NCC),--ncc $(NCC)) \
	    $(if $(NCC_SRC),--src $(NCC_SRC))

# FIRMWARE names the firmware profile for kmodel (maixpy-v4: kmodel V4 by ncc) and a firmware
# image *.bin for flash; each target takes the kind it understands.
# MaixPy-v1's 512 KiB GC heap cannot serve the face example at 320x224 (docs/maixpy-v4.md,
# "Memory"): for its kmodel V3/V4 the same fully convolutional detector at 224x160;
# INPUT_SIZE=HxW overrides. The other examples are small enough at their own size.
INPUT_SIZE ?= $(if $(filter face,$(EXAMPLE)),$(if $(filter maixpy-%,$(FIRMWARE)),160x224))
kmodel: $(STAMP)
	$(PY) host/convert.py --config $(EXAMPLE_DIR)/convert.json --out $(BUILD) \
	    $(if $(filter-out %.bin,$(FIRMWARE)),--firmware $(FIRMWARE)) \
	    $(if $(INPUT_SIZE),--input-size $(INPUT_SIZE))

PORT ?= virtual
BOARD ?= dan
BAUD ?= 1500000
METHOD ?= kflash
flash: $(STAMP)
	$(PY) host/flash.py --port $(PORT) --board $(BOARD) --baud $(BAUD) --method $(METHOD) \
	    --manifest $(BUILD)/manifest.json $(if $(ADDRESS),--address $(ADDRESS)) \
	    $(if $(filter %.bin,$(FIRMWARE)),--firmware $(FIRMWARE)) \
	    $(if $(BOARD_PROFILE),--vboard-profile $(BOARD_PROFILE)) --vboard-state $(BUILD)/vboard

eval: $(STAMP)
	$(PY) host/serial_eval.py --port $(PORT) --manifest $(BUILD)/manifest.json --out $(BUILD)/eval \
	    --images $(EXAMPLE_DIR)/eval --vboard-state $(BUILD)/vboard \
	    $(if $(wildcard $(EXAMPLE_DIR)/eval_labels.json),--eval-labels $(EXAMPLE_DIR)/eval_labels.json) \
	    $(if $(BOARD_PROFILE),--vboard-profile $(BOARD_PROFILE))

train-example: $(STAMP)
	$(PY) $(EXAMPLE_DIR)/train.py

# Two workers, one test file each at a time (--dist loadfile: a file's module fixtures are
# built once): most tests wait on a virtual line, a subprocess or the other core.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" tests

# The board's interpreter (micropython ced340d, float32) at .venv/bin/micropython: tests/test_mpy_*
# run device/ on it and skip without it. MICROPY_SRC=DIR: a source bundle with a build.sh.
.PHONY: micropython
MICROPY_SRC ?=
micropython: $(STAMP)
	sh tools/build_micropython.sh $(VENV)/bin $(MICROPY_SRC)

.PHONY: soak
FRAMES ?= 20000
soak: $(STAMP)
	SOAK_FRAMES=$(FRAMES) SOAK_FIGURES=$(BUILD)/soak.json $(PY) -m pytest -q -s tests/test_soak.py

.PHONY: bench
bench: $(STAMP)
	$(PY) bench/run.py $(if $(QUICK),--quick)

clean:
	rm -rf $(BUILD)
