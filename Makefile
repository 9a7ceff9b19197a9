# The front door: `make run` serves mimoweb, `make test` runs the whole suite.
# Both work on a fresh machine: they find Python 3.12+ (also under pyenv), make
# the virtual environment in .venv and install the pinned requirements.

.DEFAULT_GOAL := run
SHELL := /bin/bash
PORT ?= 8000
FAKE_MIMO_PORT ?= 8765
# MIMOWEB_DEMO=1 (or true) also starts the fake MiMo server; settings.py checks the value.
DEMO := $(filter 1 true,$(shell echo '$(MIMOWEB_DEMO)' | tr A-Z a-z))
VENV := .venv
PY := $(VENV)/bin/python

# The newest Python 3.12+ on PATH or under pyenv; Django 6.1 needs 3.12.
FIND_PYTHON := for p in python3.14 python3.13 python3.12 python3 \
	  $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do \
	  "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { command -v "$$p"; break; }; \
	done
SYSTEM_PYTHON := $(shell $(FIND_PYTHON))

# Scale-out test run: the suite again on PostgreSQL with the Redis channel layer.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/mimoweb
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

$(PY):
	@test -n "$(SYSTEM_PYTHON)" || { echo "mimoweb needs Python 3.12 or newer; none was found on PATH or under pyenv." >&2; exit 1; }
	$(SYSTEM_PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

.PHONY: run test chromium messages screenshots image image-podman image-docker base-image
run: $(VENV)/.installed
	$(PY) manage.py migrate --no-input
	$(PY) manage.py collectstatic --no-input --verbosity 0
	$(PY) manage.py welcome --fake-mimo-url http://127.0.0.1:$(FAKE_MIMO_PORT) --site-url http://127.0.0.1:$(PORT)
	@if [ -n "$(DEMO)" ]; then \
	  $(VENV)/bin/daphne -b 127.0.0.1 -p $(FAKE_MIMO_PORT) chat.mimo.fake:application > "$${MIMOWEB_DATA_DIR:-data}/fake-mimo.log" 2>&1 & \
	  trap "kill $$!" EXIT; \
	fi; \
	$(PY) manage.py runserver 127.0.0.1:$(PORT)

# A command the tests need, from Debian's packages: installed where we are root, else named.
# $(1): the command, $(2): its package, $(3): what needs it.
define debian_package
	@command -v $(1) >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
	  else \
	    echo "$(3) need Debian's $(2): run 'sudo apt-get install $(2)' once." >&2; exit 1; \
	  fi; }
endef

# Browser tests drive Debian's Chromium; a test tool's own browser download
# does not work on these machines.
chromium:
	$(call debian_package,chromium,chromium,The browser tests)

# axe-core, for the accessibility test, from the npm registry at the version package-lock.json pins.
node_modules/axe-core/axe.min.js: package.json package-lock.json
	$(call debian_package,npm,npm,The accessibility tests)
	npm ci --no-audit --no-fund
	touch $@

test: $(VENV)/.installed-test chromium node_modules/axe-core/axe.min.js
	$(PY) -m pytest
	@if $(PY) -m tests.services_reachable "$(TEST_DATABASE_URL)" "$(TEST_REDIS_URL)"; then \
	  echo "Again on PostgreSQL with the Redis channel layer (the container test ran against it already):"; \
	  DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" $(PY) -m pytest --ignore=tests/test_container.py; \
	elif [ "$$CI" = "true" ]; then \
	  echo "CI=true: PostgreSQL and Redis must be reachable for the scale-out run." >&2; exit 1; \
	else \
	  echo "PostgreSQL or Redis not reachable: the scale-out run was skipped."; \
	fi

# Pictures of the main screens, light and dark, phone and desktop, in screenshots/ (git ignores it),
# against the fake MiMo server; it installs nothing beyond what `make test` does.
screenshots: $(VENV)/.installed-test chromium
	$(PY) -m pytest -m screenshots tests/browser/test_screenshots.py -q

# For developers who change user-visible strings: refresh the catalogs.
messages: $(VENV)/.installed
	$(PY) manage.py makemessages --locale zh_Hans --locale zh_Hant --no-obsolete --ignore '.venv/*' --ignore 'tests/*' --ignore 'node_modules/*'
	$(PY) manage.py compilemessages --ignore '.venv/*' --ignore 'node_modules/*'

# The container image (README, "Container image"): with podman where it is installed, else
# with docker where its engine answers, else with podman from Debian's packages.
IMAGE ?= localhost/mimoweb:latest
image:
	@if command -v podman >/dev/null || ! docker info >/dev/null 2>&1; \
	then $(MAKE) --no-print-directory image-podman; \
	else $(MAKE) --no-print-directory image-docker; fi

# No container registry need be reachable: the base image is Debian trixie's Python 3.13, made
# here once with mmdebstrap from the mirror apt uses (PYTHON_IMAGE=python:3.13-slim: the official one).
# podman runs with runc (crun refuses a host with both cgroup v1 and v2) and within the
# host's rlimits (podman asks for more, which root here may not raise); --format docker
# keeps the HEALTHCHECK. The build reaches the package index through the host's network
# and certificate bundle, neither of which stays in the image.
BASE_IMAGE := localhost/python-base:3.13
PODMAN := podman --runtime runc
PODMAN_LIMITS := --ulimit nofile=$$(ulimit -Hn):$$(ulimit -Hn) --ulimit nproc=32768:32768
image-podman: PYTHON_IMAGE ?= $(BASE_IMAGE)
image-podman:
	$(call debian_package,podman,podman,make image)
	$(call debian_package,runc,runc,make image)
	@[ "$(PYTHON_IMAGE)" != "$(BASE_IMAGE)" ] || podman image exists $(BASE_IMAGE) || $(MAKE) --no-print-directory base-image
	$(PODMAN) build --format docker --network host $(PODMAN_LIMITS) \
	  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
	  --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) -t $(IMAGE) .

base-image:
	$(call debian_package,mmdebstrap,mmdebstrap,make image)
	set -o pipefail; mirror=$$(awk '/^URIs:/ {print $$2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null); \
	mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates,netbase,tzdata \
	  trixie - "deb $${mirror:-http://deb.debian.org/debian} trixie main" \
	| $(PODMAN) import --change 'ENV LANG=C.UTF-8' \
	  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - $(BASE_IMAGE)

image-docker: PYTHON_IMAGE ?= python:3.13-slim
image-docker:
	docker build --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) -t $(IMAGE) .
