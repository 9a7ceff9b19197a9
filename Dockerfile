# mimoweb for production: daphne serving mimoweb.asgi, configured only by
# environment variables (see README). Build stage installs, runtime stage runs
# as a non-root user.

FROM python:3.13-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /venv
COPY requirements.txt /app/requirements.txt
RUN /venv/bin/pip install -r /app/requirements.txt
COPY . /app
WORKDIR /app
# Static files are collected at build time; the secrets here are throwaway
# values that exist only so the settings load.
RUN SECRET_KEY=collectstatic-only MIMOWEB_DATA_DIR=/tmp/build \
    MIMOWEB_ENCRYPTION_KEYS="$(/venv/bin/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    /venv/bin/python manage.py collectstatic --no-input \
 && rm -rf /tmp/build

FROM python:3.13-slim
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin mimoweb
COPY --from=build /venv /venv
COPY --from=build --chown=root:root /app /app
WORKDIR /app
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1
# Attached files are kept in the data folder (README: Attachments) unless
# MIMOWEB_ATTACHMENT_STORAGE names a store shared by several hosts: give it a volume.
RUN mkdir /data && chown mimoweb /data
ENV MIMOWEB_DATA_DIR=/data
VOLUME /data
USER mimoweb
EXPOSE 8000
# Asks with the first allowed host, since Django refuses any other Host header.
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD python -c "import os, urllib.request; \
host = os.environ.get('ALLOWED_HOSTS', 'localhost').split(',')[0].strip(); \
urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8000/healthz', headers={'Host': host}), timeout=4)"
# No --proxy-headers: X-Forwarded-For is believed only from MIMOWEB_TRUSTED_PROXIES (mimoweb/proxies.py).
# The websocket limits: DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE in settings.py says why (16 MiB).
CMD ["daphne", "--bind", "0.0.0.0", "--port", "8000", \
     "--websocket-max-message-size", "16777216", "--websocket-max-frame-size", "16777216", \
     "mimoweb.asgi:application"]
