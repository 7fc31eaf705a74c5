# Keel image (every process runs from it). Build: docker build -t keel .   (docs/deployment.md: sizes, running)
#
# Stage 1 installs the hashed, runtime-only lock (requirements.lock, `make lock`) into /opt/venv
# with uv, compiles bytecode, and installs the project itself without dependencies.
# Stage 2 copies only /opt/venv and the files the processes read: no uv, no compiler, no tests.

ARG PYTHON_IMAGE=python:3.13.13-slim-trixie

FROM ${PYTHON_IMAGE} AS build
# A build stage never runs as a container (hadolint DL3057 checks every stage).
HEALTHCHECK NONE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /src
COPY requirements.lock ./
RUN uv venv --python /usr/local/bin/python3 /opt/venv \
    && uv pip sync --python /opt/venv/bin/python --require-hashes requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN uv pip install --python /opt/venv/bin/python --no-deps . \
    && /opt/venv/bin/python -c "import keel.gunicorn_worker"
# Debug symbols and the test suites that some wheels ship are dead weight at run time:
# measured on the runtime lock, stripping takes the venv from 131 MB to 95 MB.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && find /opt/venv -name '*.so' -exec strip --strip-unneeded {} + \
    && find /opt/venv -type d -name tests -path '*/site-packages/*' -prune -exec rm -rf {} + \
    && /opt/venv/bin/python -c "import uvloop, asyncpg, sqlalchemy, pydantic_core, cryptography" \
    && rm -rf /var/lib/apt/lists/*

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENVIRONMENT=production \
    PORT=8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
RUN groupadd --system --gid 10001 keel \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin keel
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY gunicorn.conf.py alembic.ini ./
COPY migrations ./migrations
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# The root filesystem may be read-only: the only writes are to /tmp (mount a tmpfs there; the
# prometheus multiprocess directory lives under it) and to /dev/shm (gunicorn's heartbeat files).
# `keel healthcheck` (GET /livez on 127.0.0.1:$PORT, 2 s timeout): no argument holds a space,
# which podman's Docker API would split. `podman build` keeps a HEALTHCHECK only with
# `--format docker` (the OCI image format has no field for it).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["keel", "healthcheck", "--path=/livez"]
STOPSIGNAL SIGTERM
CMD ["gunicorn", "--config", "/app/gunicorn.conf.py", "keel.main:create_app()"]
