# Quick start: `make run` serves the demo, `make test` runs the whole suite.
# Both set themselves up from a fresh clone (.venv, requirements, migrations).

PYTHON ?= python3
# The virtual environment and the pinned set installed in it. make test-latest sets both in
# the environment, not on make's command line, so the `make serve` a test starts uses them too.
VENV ?= .venv
REQUIREMENTS ?= requirements.txt
LATEST_VENV := .venv-latest
BIN := $(VENV)/bin
PORT ?= 8000
CHROMIUM ?= /usr/bin/chromium
NGINX ?= /usr/sbin/nginx
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
# The production flags (measured in bench/): uvloop, httptools, the sans-I/O websockets
# implementation, no per-message deflate, a listen backlog for connect storms.
# The log config is uvicorn's own plus realtime.logfilters.RedactCredentials: no token in a log line.
UVICORN_FLAGS := --loop uvloop --http realtime.serverguard:HttpToolsProtocol --ws websockets-sansio --ws-per-message-deflate false \
	--backlog 4096 --lifespan off --no-access-log --ws-max-size 1048576 --timeout-graceful-shutdown 10 \
	--log-config project/uvicorn_logging.json
# uvicorn trusts X-Forwarded-Proto/-For from 127.0.0.1 unless told otherwise: only behind a TLS
# proxy (DJANGO_BEHIND_TLS_PROXY, read as settings.py reads it) and only from FORWARDED_ALLOW_IPS.
# Shell text that sets "$$@" to the flags; recipes append "$$@" to the uvicorn command.
PROXY_ARGS := case "$$(printf %s "$${DJANGO_BEHIND_TLS_PROXY:-}" | tr -d '[:space:]' | tr A-Z a-z)" in \
	1|true|yes|on) set -- --proxy-headers --forwarded-allow-ips "$${FORWARDED_ALLOW_IPS:-127.0.0.1}";; \
	*) set -- --no-proxy-headers;; esac
# $(call apt-install,<packages>,<what for>): install Debian packages when root, else stop naming the command.
apt-install = if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "make: installing $(1) ($(2))"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); \
	else \
	  echo "make: $(2) needs the Debian packages: $(1). Install them with:" >&2; \
	  echo "    sudo apt-get update && sudo apt-get install -y $(1)" >&2; exit 1; \
	fi
# How make test starts the local services when they are down (as root), or tells you to.
REDIS_START := mkdir -p /var/lib/redis /var/log/redis && redis-server --daemonize yes --bind 127.0.0.1 -::1 \
	--port 6379 --save '' --appendonly no --dir /var/lib/redis --logfile /var/log/redis/redis-server.log
PG_START := pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | tail -n 1) main start
REDIS_PING := $(BIN)/python -c "import redis; redis.Redis.from_url('$(TEST_REDIS_URL)', socket_connect_timeout=3).ping()"
PG_PING := $(BIN)/python -c "import psycopg; psycopg.connect('$(TEST_DATABASE_URL)', connect_timeout=3).close()"
INSTALLED := $(VENV)/.installed-$(shell cksum $(REQUIREMENTS) | cut -d' ' -f1)
# Shell text that prints the Django and Python the suite runs on.
RUNS_ON := $(BIN)/python -c 'import django, sys; print(f"Django {django.get_version()}, Python {sys.version.split()[0]}")'

.PHONY: setup migrate run run-cluster serve test test-sqlite test-latest test-fast system-deps services bench \
	lint fmt clean

$(INSTALLED): $(REQUIREMENTS)
	@test -x $(BIN)/python || $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
		{ $(call apt-install,python3-venv,a virtual environment in $(VENV)); }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(REQUIREMENTS)
	rm -f $(VENV)/.installed-* && touch $@

setup: $(INSTALLED)

migrate: setup
	$(BIN)/python manage.py migrate --noinput -v0

## run: serve the demo with `manage.py runserver` (Daphne) on 127.0.0.1:$(PORT)
run: migrate
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

## run-cluster: the production way, twice: `make serve`'s guards and flags, two uvicorn processes on
## PORT and PORT+1 sharing REDIS_URL (and DATABASE_URL), or PostgreSQL alone (REALTIME_BUS=postgres
## and DATABASE_URL). No demo users; DEBUG off unless set; DJANGO_SECRET_KEY required (every
## process of the cluster must sign with the same key).
run-cluster: setup
	@test -n "$$REDIS_URL" || { test "$$REALTIME_BUS" = postgres && test -n "$$DATABASE_URL"; } || { \
		echo "make run-cluster: set REDIS_URL (e.g. redis://127.0.0.1:6379/0), or REALTIME_BUS=postgres" \
		"with DATABASE_URL on PostgreSQL; processes share events, presence and rate limits through it." >&2; exit 1; }
	@test -n "$$DJANGO_SECRET_KEY" || { echo "make run-cluster: set DJANGO_SECRET_KEY to a long random value," \
		"the same for every process and host of the cluster (sessions signed by one are read by the others):" \
		"python3 -c 'import secrets; print(secrets.token_urlsafe(50))' prints one." \
		"For a development server with demo users, use make run." >&2; exit 1; }
	export DJANGO_DEBUG=$${DJANGO_DEBUG:-0}; \
	$(BIN)/python manage.py migrate --noinput -v0 && \
	$(BIN)/python manage.py collectstatic --noinput -v0 || exit 1; \
	echo "Serving http://$${HOST:-127.0.0.1}:$(PORT) and http://$${HOST:-127.0.0.1}:$$(($(PORT)+1)) as one app; Ctrl-C stops both."; \
	trap 'kill 0' INT TERM; $(PROXY_ARGS); \
	$(BIN)/uvicorn project.asgi:application --host $${HOST:-127.0.0.1} --port $(PORT) $(UVICORN_FLAGS) "$$@" & \
	$(BIN)/uvicorn project.asgi:application --host $${HOST:-127.0.0.1} --port $$(($(PORT)+1)) $(UVICORN_FLAGS) "$$@" & \
	wait

## serve: the production way: DEBUG off unless set, uvicorn, static files by WhiteNoise
# Two `make serve` started at once in one checkout take turns to migrate and collect the static
# files (flock on SERVE_LOCK): two collectstatic runs into one staticfiles/ delete and rename each
# other's files, and one of them fails. The lock is released before uvicorn starts.
SERVE_LOCK := $(VENV)/.serve.lock
serve: setup
	@test -n "$$DJANGO_SECRET_KEY" || test -f .secret_key || \
		$(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))' > .secret_key
	export DJANGO_DEBUG=$${DJANGO_DEBUG:-0} DJANGO_SECRET_KEY=$${DJANGO_SECRET_KEY:-$$(cat .secret_key)}; \
	( if command -v flock >/dev/null; then flock 9; fi; \
	  $(BIN)/python manage.py migrate --noinput -v0 && \
	  $(BIN)/python manage.py collectstatic --noinput -v0 ) 9>$(SERVE_LOCK) && \
	$(PROXY_ARGS) && \
	exec $(BIN)/uvicorn project.asgi:application --host $${HOST:-127.0.0.1} --port $(PORT) \
		$(UVICORN_FLAGS) "$$@"

## system-deps: the Debian packages the tests drive: chromium (browser tests), nginx (reverse-proxy test).
## Installed when make runs as root; otherwise make stops and prints the command.
system-deps:
	@missing=""; \
	test -x $(CHROMIUM) || missing="$${missing:+$$missing }chromium"; \
	test -x $(NGINX) || missing="$${missing:+$$missing }nginx-light"; \
	if [ -n "$$missing" ]; then $(call apt-install,$$missing,make test); fi; \
	test -x $(CHROMIUM) || { echo "make test: no chromium at $(CHROMIUM); set CHROMIUM=/path/to/chromium." >&2; exit 1; }; \
	test -x $(NGINX) || { echo "make test: no nginx at $(NGINX); set NGINX=/path/to/nginx." >&2; exit 1; }

## services: Redis at TEST_REDIS_URL and PostgreSQL at TEST_DATABASE_URL. Started when down, local
## and make runs as root (as a Debian machine without systemd needs); otherwise make stops and
## prints the command that starts them.
services: setup
	@if ! err=$$($(REDIS_PING) 2>&1); then \
	  case "$(TEST_REDIS_URL)" in redis://127.0.0.1:6379*|redis://localhost:6379*) local=1;; *) local=;; esac; \
	  if [ -n "$$local" ] && [ "$$(id -u)" = 0 ] && command -v redis-server >/dev/null; then \
	    echo "make test: Redis is down; starting it: $(REDIS_START)"; \
	    $(REDIS_START); \
	    for _ in 1 2 3 4 5 6 7 8 9 10; do $(REDIS_PING) 2>/dev/null && break; sleep 1; done; \
	    $(REDIS_PING) || { echo "make test: Redis would not start; see /var/log/redis/redis-server.log" >&2; exit 1; }; \
	  else \
	    echo "make test: Redis is not reachable at $(TEST_REDIS_URL): $$(printf '%s\n' "$$err" | grep -E '^[A-Za-z_.]*(Error|Exception)' | tail -n 1)" >&2; \
	    echo "Start it with:" >&2; \
	    command -v redis-server >/dev/null || echo "    sudo apt-get update && sudo apt-get install -y redis-server" >&2; \
	    echo "    sudo sh -c \"$(REDIS_START)\"" >&2; \
	    echo "or point TEST_REDIS_URL at a Redis server." >&2; exit 1; \
	  fi; \
	fi
	@if ! err=$$($(PG_PING) 2>&1); then \
	  case "$(TEST_DATABASE_URL)" in *@127.0.0.1:5432/*|*@localhost:5432/*) local=1;; *) local=;; esac; \
	  if [ -n "$$local" ] && [ "$$(id -u)" = 0 ] && [ -d /etc/postgresql ] && ! pg_isready -q -h 127.0.0.1 -p 5432; then \
	    echo "make test: PostgreSQL is down; starting it: $(PG_START)"; \
	    $(PG_START); \
	    for _ in $$(seq 30); do $(PG_PING) 2>/dev/null && break; sleep 1; done; \
	    $(PG_PING) || { echo "make test: PostgreSQL would not start, or refuses $(TEST_DATABASE_URL) (above)" >&2; exit 1; }; \
	  else \
	    echo "make test: PostgreSQL is not reachable at $(TEST_DATABASE_URL): $$(printf '%s\n' "$$err" | grep -E '^[A-Za-z_.]*(Error|Exception)' | tail -n 1)" >&2; \
	    if [ -d /etc/postgresql ]; then \
	      echo "If it is down, start it with:" >&2; \
	      echo "    sudo $(PG_START)" >&2; \
	    else \
	      echo "Install it with:" >&2; \
	      echo "    sudo apt-get update && sudo apt-get install -y postgresql" >&2; \
	      echo "then let postgres connect from 127.0.0.1 without a password and create the database test," >&2; \
	    fi; \
	    echo "or point TEST_DATABASE_URL at a PostgreSQL server." >&2; exit 1; \
	  fi; \
	fi

## test: the whole suite on SQLite (the default), then the in-process tests again with the default
## database on PostgreSQL. The tests that need real servers on PostgreSQL (two processes on the
## postgres bus, outages and restarts, the pool under load) make their own PostgreSQL databases and
## run in the first pass; the other real-server and browser tests run on SQLite, here and on
## Django 6.1 (test-latest): the database paths they take are those the in-process tests check.
## Needs Debian chromium at $(CHROMIUM) and nginx at $(NGINX) (system-deps), Redis at $(TEST_REDIS_URL)
## and PostgreSQL at $(TEST_DATABASE_URL) (services).
test: setup system-deps services
	@echo "== make test: the suite on SQLite, $$($(RUNS_ON)) =="
	CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest --durations=15 $(PYTEST_ARGS)
	@echo "== make test: the in-process tests on PostgreSQL ($(TEST_DATABASE_URL)); the real-server" \
		"tests ran above, those on PostgreSQL with databases of their own, $$($(RUNS_ON)) =="
	DATABASE_URL=$(TEST_DATABASE_URL) DJANGO_TEST_DATABASE_NAME=test_realtime_$$$$ \
		$(BIN)/python -m pytest -m "not slow" --durations=15 $(PYTEST_ARGS)

## test-latest: the whole suite once, on SQLite, on the current Django (requirements-latest.txt)
## and the newest Python 3.12+ that .ci/latest-python finds, in $(LATEST_VENV). PostgreSQL stays
## with make test. Needs what make test needs (system-deps, services).
test-latest:
	@python=$$(.ci/latest-python) || { echo "make test-latest: Django 6 needs Python 3.12 or newer;" \
		"none runs here (python3.14, python3.13, python3.12, python3 on PATH," \
		"$${PYENV_ROOT:-$$HOME/.pyenv}/versions/*/bin/python3)." >&2; exit 1; }; \
	VENV=$(LATEST_VENV) REQUIREMENTS=requirements-latest.txt PYTHON="$$python" \
		$(MAKE) --no-print-directory test-sqlite

## test-sqlite: the whole suite once, on SQLite, in $(VENV)
test-sqlite: setup system-deps services
	@echo "== the suite on SQLite, $$($(RUNS_ON)) ($(VENV)) =="
	CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest --durations=15 $(PYTEST_ARGS)

## test-fast: everything but the slow tests (real servers, browser)
test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## bench: the fan-out benchmark (bench/README.md); BENCH_ARGS=--quick for a smoke run
# The first run ends with the targets against the bare server and the past-capacity block.
# The second run and metrics_cost.py are the cost of the metrics: with and without them, in turns.
bench: setup
	npm ci --no-audit --no-fund --prefix bench/client
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/run.py --servers realtime-uvicorn-nometrics,realtime-uvicorn --repeat 3 \
		--scenarios saturation-100,rate-1000,rate-5000,idle-10000 --compare realtime-uvicorn-nometrics,realtime-uvicorn --out bench/results/metrics.md $(BENCH_ARGS)
	$(BIN)/python bench/metrics_cost.py
	$(BIN)/python bench/upload_memory.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(LATEST_VENV) staticfiles .pytest_cache .ruff_cache
