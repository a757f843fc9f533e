# Quick start: `make run` serves the demo, `make test` runs the whole suite.
# Both set themselves up from a fresh clone (.venv, requirements, migrations).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
CHROMIUM ?= /usr/bin/chromium
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
# The production flags (measured in bench/): uvloop, httptools, the sans-I/O websockets
# implementation, no per-message deflate, a listen backlog for connect storms.
UVICORN_FLAGS := --loop uvloop --http httptools --ws websockets-sansio --ws-per-message-deflate false \
	--backlog 4096 --lifespan off --no-access-log --ws-max-size 1048576 --timeout-graceful-shutdown 10
INSTALLED := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: setup migrate run run-cluster serve test test-fast bench lint fmt clean

$(INSTALLED): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

setup: $(INSTALLED)

migrate: setup
	$(BIN)/python manage.py migrate --noinput -v0

## run: serve the demo with `manage.py runserver` (Daphne) on 127.0.0.1:$(PORT)
run: migrate
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

## run-cluster: two uvicorn processes on PORT and PORT+1 sharing REDIS_URL (and DATABASE_URL)
run-cluster: migrate
	@test -n "$$REDIS_URL" || { echo "make run-cluster: set REDIS_URL (e.g. redis://127.0.0.1:6379/0);" \
		"processes share events, presence and rate limits through it. Set DATABASE_URL for PostgreSQL." >&2; exit 1; }
	$(BIN)/python manage.py seed_demo
	@echo "Serving http://127.0.0.1:$(PORT) and http://127.0.0.1:$$(($(PORT)+1)) as one app; Ctrl-C stops both."
	trap 'kill 0' INT TERM; \
	$(BIN)/uvicorn project.asgi:application --port $(PORT) $(UVICORN_FLAGS) & \
	$(BIN)/uvicorn project.asgi:application --port $$(($(PORT)+1)) $(UVICORN_FLAGS) & \
	wait

## serve: the production way: DEBUG off unless set, uvicorn, static files by WhiteNoise
serve: setup
	@test -n "$$DJANGO_SECRET_KEY" || test -f .secret_key || \
		$(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))' > .secret_key
	export DJANGO_DEBUG=$${DJANGO_DEBUG:-0} DJANGO_SECRET_KEY=$${DJANGO_SECRET_KEY:-$$(cat .secret_key)}; \
	$(BIN)/python manage.py migrate --noinput -v0 && \
	$(BIN)/python manage.py collectstatic --noinput -v0 && \
	exec $(BIN)/uvicorn project.asgi:application --host $${HOST:-127.0.0.1} --port $(PORT) \
		$(UVICORN_FLAGS)

## test: the whole suite, twice: on SQLite (the default) and on PostgreSQL.
## Needs Debian chromium at $(CHROMIUM), Redis at $(TEST_REDIS_URL) and PostgreSQL at $(TEST_DATABASE_URL).
test: setup
	@test -x $(CHROMIUM) || { echo "make test: $(CHROMIUM) is missing; the browser tests will fail." \
		"Install Debian's chromium (apt-get install chromium) or set CHROMIUM=/path/to/chromium." >&2; }
	@$(BIN)/python -c "import redis; redis.Redis.from_url('$(TEST_REDIS_URL)', socket_connect_timeout=3).ping()" \
		2>/dev/null || { echo "make test: Redis is not reachable at $(TEST_REDIS_URL); the Redis tests will fail." >&2; }
	@$(BIN)/python -c "import psycopg; psycopg.connect('$(TEST_DATABASE_URL)', connect_timeout=3).close()" \
		2>/dev/null || { echo "make test: PostgreSQL is not reachable at $(TEST_DATABASE_URL)." >&2; exit 1; }
	@echo "== make test: the suite on SQLite =="
	CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest $(PYTEST_ARGS)
	@echo "== make test: the suite on PostgreSQL ($(TEST_DATABASE_URL)) =="
	CHROMIUM=$(CHROMIUM) DATABASE_URL=$(TEST_DATABASE_URL) DJANGO_TEST_DATABASE_NAME=test_realtime_$$$$ \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

## test-fast: everything but the slow tests (real servers, browser)
test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## bench: the fan-out benchmark (bench/README.md); BENCH_ARGS=--quick for a smoke run
bench: setup
	npm ci --no-audit --no-fund --prefix bench/client
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/upload_memory.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
