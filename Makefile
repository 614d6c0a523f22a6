# Two commands: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
# A Django release to install in place of the newest one pyproject.toml allows, e.g.
# DJANGO="django>=5.2,<5.3" (.ci/run runs the suite on each supported Django this way).
DJANGO ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ADDRPORT ?= 127.0.0.1:8000

.PHONY: install node run test lint clean bench bench-quick bench-bigconv bench-search messages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]" $(if $(DJANGO),"$(DJANGO)")
	$(BIN)/python -m django --version
	touch $(STAMP)

install: $(STAMP)

# What the tests take from npm (tests/node/package.json): the AI SDK, axe-core and Node 22.
# Without npm the tests that need them skip, saying so (CI installs it: .ci/run).
NODE_STAMP := tests/node/node_modules/.installed-stamp
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix tests/node --no-audit --no-fund --loglevel=error && touch $(NODE_STAMP); \
	else echo "npm is not installed: the tests that drive the AI SDK and axe-core will skip"; fi

node: $(NODE_STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py runserver $(ADDRPORT)

test: install node
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) db.sqlite3* test-db.sqlite3*

# Benchmarks (docs/benchmarks.md): the app against a bare ASGI baseline, side by side.
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.search

bench-quick: install
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

# One 6,000-message conversation beside another visitor's sends (issue 9; bench/bigconv.py).
bench-bigconv: install
	$(BIN)/python -m bench.bigconv $(BENCH_ARGS)

# Search at volume: one owner, 10,000 conversations of 50 messages, on SQLite and (when
# DATABASE_URL names one) PostgreSQL (issue 29; bench/search.py).
bench-search: install
	$(BIN)/python -m bench.search $(BENCH_ARGS)

# The catalogues (issue 32): chat/locale/{de,es}/LC_MESSAGES/{django,djangojs}.po regenerated
# from the code, then compiled to the .mo files the app ships (both are committed). Run inside
# chat/ so that only the app's strings are taken; file-only locations keep the diffs small.
# tests/test_i18n.py fails while a catalogue is stale.
LANGS := -l de -l es
MAKEMESSAGES := ../$(BIN)/django-admin makemessages $(LANGS) --add-location=file --no-obsolete -i vendor -i locale
messages: install
	cd chat && env -u DJANGO_SETTINGS_MODULE $(MAKEMESSAGES) -d django
	cd chat && env -u DJANGO_SETTINGS_MODULE $(MAKEMESSAGES) -d djangojs
	cd chat && env -u DJANGO_SETTINGS_MODULE ../$(BIN)/django-admin compilemessages
