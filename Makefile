# The two commands of the README:
#   make course   run every notebook (default profile) into build/, with build/index.html
#   make test     unit tests, papermill smoke run of every notebook, nbval on the stored notebooks
# Both set up the environment first: the active interpreter if it is already prepared
# (conda env from environment.yml, activated venv), else a .venv created here and
# installed with the pinned constraints.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
CONSTRAINTS := requirements/constraints.txt

ifeq ($(shell $(PYTHON) tools/prepared_env.py >/dev/null 2>&1 && echo yes),yes)
PY := $(PYTHON)
SETUP :=
else
PY := $(VENV)/bin/python
SETUP := $(VENV)/.installed
endif

export TQDM_DISABLE := 1
export PYTHONHASHSEED := 0
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg

.PHONY: setup course test unit-tests smoke nbval notebooks constraints benchmarks clean

setup: $(SETUP)

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[all]"
	touch $@

course: setup
	$(PY) -m course_lib.cli run --profile default --out build

test: setup
	rm -rf build/smoke build/nbval_timings.json
	$(PY) -m pytest -p no:cacheprovider -rs --doctest-modules tests course_lib; status=$$?; \
	$(PY) -m pytest -p no:cacheprovider $(NBVAL) notebooks/[0-9][0-9]_*.ipynb; status2=$$?; \
	$(PY) tools/timing_table.py; \
	test $$status -eq 0 -a $$status2 -eq 0

unit-tests: setup
	$(PY) -m pytest -p no:cacheprovider -m "not notebook" --doctest-modules tests course_lib

smoke: setup
	$(PY) -m course_lib.cli run --profile smoke --out build/smoke --no-html

nbval: setup
	$(PY) -m pytest -p no:cacheprovider $(NBVAL) notebooks/[0-9][0-9]_*.ipynb

# Re-execute the stored notebooks from notebooks/src/ (default profile, outputs stored).
notebooks: setup
	$(PY) tools/build_notebooks.py $(NAMES)

constraints: setup
	{ head -2 $(CONSTRAINTS); $(VENV)/bin/python -m pip freeze --exclude-editable | grep -vi '^course-kit'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

benchmarks: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build
