# phonjax — the two commands of the README:
#   make demo   set up, convert the embedded default model (SevenNet-l3i5) once, predict LiF's dispersion
#   make test   set up (incl. Quantum ESPRESSO) and run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
OUT    ?= out/demo
# one model cache for `make demo` and the CLI: phonjax's default model directory ($PHONJAX_MODEL, else
# $XDG_CACHE_HOME/phonjax/models/sevennet-l3i5, else ~/.cache/...; phonjax/defaults.py), so `phonjax predict`
# without --model reuses it; .cache/models/default (the path in configs/) is a link to it
MODEL  ?= $(if $(PHONJAX_MODEL),$(PHONJAX_MODEL),$(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME),$(HOME)/.cache)/phonjax/models/sevennet-l3i5)
MODEL_LINK := .cache/models/default

.PHONY: setup setup-qe model demo test test-fast bench report clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch's CPU wheel first (plain `torch` would pull a multi-GB CUDA build)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[convert,test]"
	touch $@

setup: $(VENV)/.installed

setup-qe:
	bash scripts/install_qe.sh $(PY)

$(MODEL)/config.yaml: | setup
	$(VENV)/bin/phonjax convert sevennet --out $(MODEL)

model: $(MODEL)/config.yaml
	@mkdir -p $(dir $(MODEL_LINK)); [ -e $(MODEL_LINK) ] || ln -s $(abspath $(MODEL)) $(MODEL_LINK)

demo: setup model
	$(VENV)/bin/phonjax predict examples/LiF/POSCAR --model $(MODEL) --born examples/LiF/BORN \
		--reference examples/LiF/dfpt/band.yaml --out $(OUT)
	@echo "demo written to $(OUT)/ (band.png, band.yaml, force_constants.hdf5, summary.txt)"

# test files spread over the cores (at most 4 workers: memory), each file's tests in one worker (module fixtures)
test: setup setup-qe
	$(PY) -m pytest -q -ra -n auto --maxprocesses 4 --dist loadfile tests

test-fast: setup
	$(PY) -m pytest -q -ra -m "not slow and not qe" tests

bench: setup
	$(PY) benchmarks/run_all.py

# the LiF end-to-end accuracy report (reports/lif.md) from SevenNet-0 and every finetuned model in out/lif/*/model
report: setup model
	$(PY) benchmarks/lif_accuracy.py

clean:
	rm -rf $(VENV) .cache out
