# The two commands (see README.md):  make demo  |  make test
# Both create .venv/ (Python 3.9+; python3 on PATH), install the pinned requirements and the backend.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test benchmarks clean

setup: $(STAMP)

$(STAMP): requirements.txt ModelBackend/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e ModelBackend
	touch $(STAMP)

demo: setup
	$(VENV)/bin/lesionseg demo -o demo-output --overwrite

test: setup
	$(PY) -m pytest Testing -q -p no:cacheprovider

benchmarks: setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) demo-output
