# hemotwin: two set-up commands — `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench bench-clinical bench-vision bench-vision-synthetic default-model gallery clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (need Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

# Real PBC cells beside the twin in the gallery when the development data are next to the clone.
PBC_DIR := $(wildcard ../shared/data/pbc)
PBC_OPT := $(if $(PBC_DIR),--pbc $(PBC_DIR))

demo: $(STAMP)
	$(VENV)/bin/hemotwin demo --out demo_out --overwrite $(PBC_OPT)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(PY) -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

bench: $(STAMP)
	$(PY) benchmarks/bench_twin.py
	$(PY) benchmarks/bench_realism.py
	$(PY) benchmarks/bench_vision_speed.py

# Clinical layers: detection, whole-chain analysis, scoring, survival, monitoring (~30 min on 2 cores).
bench-clinical: $(STAMP)
	$(PY) benchmarks/bench_detection.py
	$(PY) benchmarks/bench_analyze.py
	$(PY) benchmarks/bench_prognosis_scoring.py
	$(PY) benchmarks/bench_survival.py
	$(PY) benchmarks/bench_monitoring.py

# Twin-only 15-class classifier on unseen profiles and on real data (~45 min on 2 cores).
bench-vision-synthetic: $(STAMP)
	$(PY) benchmarks/bench_vision_synthetic.py

# Cross-microscope classifier comparison (none / color / twin): ~15 min on 2 cores.
bench-vision: $(STAMP)
	$(PY) benchmarks/bench_vision.py --workers 2 --threads 1

# Re-train the shipped classifier (src/hemotwin/vision/default_model.hemo): ~15 min.
default-model: $(STAMP)
	$(PY) scripts/train_default_model.py --overwrite

gallery: $(STAMP)
	$(VENV)/bin/hemotwin gallery --out docs/gallery.png --overwrite $(PBC_OPT)

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache
