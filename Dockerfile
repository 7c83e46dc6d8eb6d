# syntax=docker/dockerfile:1
#
# Vonix images. Targets:
#   app (default, last stage)  docker build -t vonix:VERSION .
#   bot                        docker build --target bot -t vonix-bot:VERSION .
#
# The builder turns the project into a wheel and installs it into a virtualenv (package data
# included: migrations, the common-passwords list); the runtime stages copy only that virtualenv
# and the files the server reads from outside the package (static/, sw/, examples/), so no
# compiler, pip cache, tests or sources end up in the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# .dockerignore keeps the context to what a build needs (no .venv, .git, tests, databases).
COPY . .

# The venv lives at the same path in every stage: its scripts' shebangs point at it.
# Dependencies come from the hashed lock files (`make lock`), the versions `make test` ran:
# build.txt (pip, setuptools) first, then the runtime set; --no-build-isolation makes the lock's
# one sdist and the project's wheel build with that hashed setuptools, not an unpinned download;
# the project goes in with --no-deps and `pip check` proves the lock covers what it declares.
# The last step fails the build when the installed package lacks a data file the server reads
# (pyproject package-data: the common-passwords list, the migrations); -P keeps /src off sys.path
# so the check sees the installed copy, not the sources.
RUN python -m venv /opt/vonix \
    && /opt/vonix/bin/pip install --no-cache-dir --require-hashes -r requirements/build.txt \
    && /opt/vonix/bin/pip install --no-cache-dir --require-hashes --no-build-isolation -r requirements/runtime.txt \
    && /opt/vonix/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && /opt/vonix/bin/pip install --no-cache-dir --no-deps /tmp/wheels/vonix-*.whl \
    && /opt/vonix/bin/pip check \
    && /opt/vonix/bin/vonix --help > /dev/null \
    && /opt/vonix/bin/python -P -c "from server.auth.passwords import COMMON_PASSWORDS as c; from server.db.migrate import MIGRATIONS as m; assert c.is_file() and (m / 'script.py.mako').is_file() and any((m / 'versions').glob('0001_*.py')), 'package data missing'"

# Directories that may not exist in a checkout yet (git keeps no empty ones): create them so the
# runtime stage can copy them unconditionally.
RUN mkdir -p /src/static /src/sw /src/examples

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# A fixed, unprivileged uid/gid: the Helm chart's securityContext names the same numbers.
RUN groupadd --system --gid 10001 vonix \
    && useradd --system --uid 10001 --gid vonix --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin vonix

ENV PATH=/opt/vonix/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VONIX_ENV=production \
    VONIX_HOST=0.0.0.0 \
    VONIX_PORT=8000 \
    STATIC_DIR=/app/static

WORKDIR /app
# Owned by root and read-only to the app user: the server never writes beside its code, which is
# what lets Kubernetes run it with a read-only root filesystem.
COPY --from=builder /opt/vonix /opt/vonix
COPY --from=builder /src/static /app/static
COPY --from=builder /src/sw /app/sw
# Uploaded avatars (MEDIA_DIR): the one directory the app writes, owned by its user so a fresh
# named volume mounted here (docker compose) starts writable.
RUN mkdir -p /app/media && chown 10001:10001 /app/media

USER 10001:10001

# ---------------------------------------------------------------------------------------------
# The example echo bot: a websocket client of the server, so it needs no port and no health
# endpoint of its own; its health is "the server it talks to answers".
FROM runtime AS bot

COPY --from=builder /src/examples /app/examples
ENV VONIX_URL=http://app:8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['VONIX_URL'] + '/api/health', timeout=4)"]

CMD ["python", "/app/examples/echo_bot.py"]

# ---------------------------------------------------------------------------------------------
FROM runtime AS app

EXPOSE 8000

# Liveness, not readiness: a database outage must not get every replica marked unhealthy.
# python, because the slim base has no curl or wget.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=2)"]

# uvicorn turns SIGTERM into the graceful drain (DRAIN_SECONDS). The exec form keeps `vonix` as
# PID 1 so the signal reaches it directly. Proxy headers are honoured from TRUSTED_PROXIES only.
STOPSIGNAL SIGTERM
CMD ["vonix", "serve", "--host", "0.0.0.0", "--port", "8000"]
