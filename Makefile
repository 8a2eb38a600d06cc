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

.PHONY: demo test test-extended test-fast test-public-api lint typecheck install clean FORCE

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

# every core (pytest-xdist, one test file per worker process); the tests across processes and clusters run
# in `make test-extended` (.ci/run runs both)
test: install
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m "not extended"

test-extended: install
	$(BIN)/python -m pytest -q -m extended

lint: install
	$(BIN)/python -m ruff check .

# pyright over the package: fails on any error and on any ctrflow import it cannot resolve (tests/typecheck.py)
typecheck: install
	$(BIN)/python tests/typecheck.py

test-fast: install
	$(BIN)/python -m pytest -q -n auto -m "not slow"

# The preprocess, train and score tests again with every private-API trick off (ctrflow.common.compat);
# tests/test_compat.py, in `make test`, compares each trick with its public path.
PUBLIC_API_TESTS := tests/test_transform_e2e.py tests/test_weight_decay.py tests/test_score_e2e.py \
	tests/test_score_fast_path.py tests/test_unique_scoring.py \
	tests/test_trainer.py::test_sparse_updates_equal_dense_updates \
	tests/test_trainer.py::test_lazy_adam_updates_only_touched_rows_like_numpy \
	tests/test_trainer.py::test_resume_restores_weights_optimizer_state_and_epoch
test-public-api: install
	CTRFLOW_PUBLIC_API_ONLY=1 $(BIN)/python -m pytest -q $(PUBLIC_API_TESTS)

clean:
	rm -rf runs .pytest_cache build
