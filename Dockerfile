# mimoweb for production: daphne serving mimoweb.asgi, configured only by
# environment variables (see README). Build stage installs, runtime stage runs
# as a non-root user with neither pip nor the build's leftovers.

# Any image with Python 3.12+ at the same path in both stages: `make image` passes
# one it makes from Debian's packages where no container registry is reachable.
ARG PYTHON_IMAGE=python:3.13-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /venv
COPY requirements.txt /app/requirements.txt
# pip has done its work once the requirements are in: the runtime copies the venv without it.
RUN /venv/bin/pip install -r /app/requirements.txt \
 && /venv/bin/pip uninstall --yes pip
COPY . /app
WORKDIR /app
# Static files are collected at build time; the secrets here are throwaway
# values that exist only so the settings load. The code is compiled here too,
# since /app is read-only to the user that runs it.
RUN SECRET_KEY=collectstatic-only MIMOWEB_DATA_DIR=/tmp/build \
    MIMOWEB_ENCRYPTION_KEYS="$(/venv/bin/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    /venv/bin/python manage.py collectstatic --no-input \
 && rm -rf /tmp/build \
 && /venv/bin/python -m compileall -q /app

FROM ${PYTHON_IMAGE}
# The official Python images ship pip in the system Python too.
RUN if python -m pip --version >/dev/null 2>&1; then python -m pip uninstall --yes pip; fi \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin mimoweb \
 && mkdir /data && chown mimoweb:mimoweb /data
COPY --from=build /venv /venv
COPY --from=build --chown=root:root /app /app
WORKDIR /app
# With no DATABASE_URL, the SQLite database and the generated secrets live in
# /data: a volume of its own, so they outlive the container.
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 MIMOWEB_DATA_DIR=/data PORT=8000
VOLUME /data
USER mimoweb
EXPOSE 8000
# Asks on the port daphne listens on, with the first allowed host, since Django
# refuses any other Host header.
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD python -c "import os, urllib.request; \
host = os.environ.get('ALLOWED_HOSTS', 'localhost').split(',')[0].strip(); \
url = 'http://127.0.0.1:%s/healthz' % os.environ['PORT']; \
urllib.request.urlopen(urllib.request.Request(url, headers={'Host': host}), timeout=4)"
# No --proxy-headers: X-Forwarded-For is believed only from MIMOWEB_TRUSTED_PROXIES (mimoweb/proxies.py).
# The websocket limits: DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE in settings.py says why (16 MiB).
# A shell reads PORT; exec leaves daphne as the process that gets the stop signal.
CMD exec daphne --bind 0.0.0.0 --port "$PORT" \
    --websocket-max-message-size 16777216 --websocket-max-frame-size 16777216 \
    mimoweb.asgi:application
