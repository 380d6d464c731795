# mmme-neuro: the two commands of the README, and helpers.
#   make figures  -> venv + install + synthetic default study + every analysis -> figures/
#   make test     -> venv + install + test suite + figure regeneration check (what .ci/run calls)
#   make docs     -> venv + install + documentation site (warnings are errors) -> docs/_build/html/
#   make figures-check -> regenerate every analysis into build/figures-check/ and compare with figures/

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mmme-installed
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: install figures figures-check test test-slow lint docs docs-online lock clean-data

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

figures: install
	$(PY) -m analyses --workers 2

# Regenerate every figure (default study, 2 dask workers) and compare with the committed ones:
# a changed, missing or uncommitted figure fails (commit changes on purpose).
figures-check: install
	rm -rf build/figures-check
	$(VENV)/bin/mmme-neuro run --workers 2 --out build/figures-check
	$(VENV)/bin/mmme-neuro compare-figures figures build/figures-check

# The suite (tests, executed notebooks, docs build), then every figure regenerated and compared.
test: install
	$(PY) -m pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory figures-check

test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

docs: install
	$(PY) -m pytest -q -p no:cacheprovider tests/test_notebooks.py  # executes the tutorials: rendered with outputs
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

# The same with links into the MNE, mne-bids, xarray, numpy, scipy, statsmodels, scikit-learn ... docs
# (intersphinx inventories fetched from the web: needs a network, which CI does not have).
docs-online: install
	MMME_DOCS_INTERSPHINX=1 $(MAKE) --no-print-directory docs

# Re-resolve and pin every dependency (run after changing pyproject.toml).
lock:
	@rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e ".[dev]"
	.venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^mmme-neuro' > requirements/constraints.txt
	@rm -rf .venv-lock

clean-data:
	rm -rf data/synthetic
