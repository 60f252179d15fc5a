# Two entry points (see README): `make reproduce` and `make test`. Both set up .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= smoke
OUT    ?= runs/$(PROFILE)
DEVICE ?= cpu
DATA_ROOT ?=
FORCE  ?=

.PHONY: setup reproduce study thesis html test test-fast lint lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[notebooks,dev,pretrained,cluster]'
	touch $(STAMP)

reproduce: $(STAMP)
	$(PY) -m ffcore reproduce --profile $(PROFILE) --out $(OUT) --device $(DEVICE) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(FORCE),--force)

# The ablation study, then notebook 08 reports it (`make reproduce` also executes 08, from the
# committed per-seed CSV, beside 01-07): the 1x grid (5 configurations x SEEDS seeds, study
# profile, AP after every phase, the phase-3 variants of the thesis configuration) and the 2x
# grid (4 configurations, every phase twice as long), each a study folder under runs/ablation.
# Cells are resumable: re-running continues a killed study. JOBS cells run at once, one torch
# thread each (bit-exact on re-run).
# FIRST_SEED=K trains seeds K..SEEDS-1 only and notebook 08 adds them to the committed per-seed
# CSV (README, "Growing a grid").
JOBS ?= 2
SEEDS ?= 8
FIRST_SEED ?= 0
STUDY = $(PY) -m ffcore study --seeds $(SEEDS) --first-seed $(FIRST_SEED) --jobs $(JOBS) --threads 1 --device $(DEVICE)
EXTEND = $(if $(filter-out 0,$(FIRST_SEED)),-p extends_csv figures/ablation_per_seed.csv)
study: $(STAMP)
	$(STUDY) --profile study --out runs/ablation/study --phase3-variants no_mixup,no_dropout,no_regularisers
	$(STUDY) --profile study_2x --out runs/ablation/study_2x --configurations none cbam_phased eca_cbam_phased eca_cbam_joint
	$(PY) -m papermill -k python3 --cwd notebooks notebooks/08_ablation_study.ipynb runs/ablation/08_ablation_study.ipynb -p run_dir runs/ablation -p device $(DEVICE) $(EXTEND)

# The executed notebooks of a run (OUT, default runs/smoke) as a static site: OUT/html/index.html
# links 01-08, figures embedded; readable without running anything. Run `make reproduce` first.
html: $(STAMP)
	$(PY) -m ffcore html --run-dir $(OUT) --out $(OUT)/html

# The companion PDF of figures/ (title page, every figure and table, numbers, provenance):
# figures/companion.pdf, a build product (not committed). Needs pdflatex (texlive-latex-extra).
thesis: $(STAMP)
	$(PY) -m ffcore thesis --figures-dir figures --profile $(PROFILE)

lint: $(STAMP)
	$(PY) -m ruff check ffcore tests benchmarks notebooks train
	$(PY) -m ruff format --check ffcore tests benchmarks train
	$(PY) -m nbstripout --verify notebooks/*.ipynb

test: lint
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -m "not slow and not notebook"

# JupyterLab at the repository root (notebooks/ and the executed copies in runs/ one click away);
# --allow-root when run as root (containers); the URL with its token is printed at start.
LAB_PORT ?= 8888
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=. --no-browser --ip=127.0.0.1 --port=$(LAB_PORT) \
		$(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf runs .pytest_cache .ruff_cache
