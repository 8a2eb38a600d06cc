# The two commands a newcomer runs (see README): `make demo` and `make test`.
# Both create ./.venv and install the project into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINKED := $(VENV)/.linked-files
PACKAGE_DIRS := common schemas pipeline model beam_jobs cli data
# setuptools' strict editable mode: a link tree under build/ that pyright, mypy and editors resolve
EDITABLE := --config-settings editable_mode=strict -e .

.PHONY: demo test test-fast lint typecheck install clean FORCE

$(STAMP): setup.py pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 'setuptools>=69' wheel
	$(BIN)/python -m pip install --quiet $(EDITABLE)'[test]'
	@find $(PACKAGE_DIRS) -type f -not -name '*.pyc' | sort > $(LINKED)
	@touch $(STAMP)

# The link tree holds one link per file: relink (a few seconds, no downloads) when files are added or removed.
$(LINKED): $(STAMP) FORCE
	@find $(PACKAGE_DIRS) -type f -not -name '*.pyc' | sort > $(LINKED).now
	@cmp -s $(LINKED).now $(LINKED) || { echo "relinking the editable install"; \
	  $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation $(EDITABLE) && mv $(LINKED).now $(LINKED); }
	@rm -f $(LINKED).now

install: $(LINKED)

demo: install
	$(BIN)/ctrflow demo --output runs/demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/python -m ruff check .

typecheck: install
	$(BIN)/python -m pyright

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf runs .pytest_cache build
