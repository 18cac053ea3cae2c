# syntax=docker/dockerfile:1
#
# Gatehouse container image. Build and run instructions: docs/deployment.md.
#
#   docker build -t gatehouse:0.1.0 .
#   docker run --read-only --tmpfs /tmp --stop-timeout 40 -p 8080:8080 \
#     -v "$PWD/gatehouse.yaml:/etc/gatehouse/gatehouse.yaml:ro" -e REDIS_URL=redis://redis:6379/0 gatehouse:0.1.0
#
# Two stages: "build" turns pyproject.toml into a wheel, installs it with the exact
# dependency versions of requirements.lock into a virtualenv, and compiles the hot path
# with mypyc (hotpath/native); "runtime" copies only that virtualenv onto a fresh slim
# base, so no compiler, build backend or source tree ships.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

# The build backend pyproject.toml names (setuptools>=68), pinned so builds repeat, and
# the mypy whose mypyc compiles the hot path.
ARG SETUPTOOLS_VERSION=84.2.1
ARG MYPY_VERSION=2.4.1
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv /opt/gatehouse \
 && /opt/gatehouse/bin/pip install --require-virtualenv --no-deps -r /tmp/requirements.lock

WORKDIR /src
COPY pyproject.toml README.md ./
COPY hotpath ./hotpath
COPY plugins ./plugins
COPY observability ./observability
COPY controlplane ./controlplane
# --no-deps: every dependency is already installed from the lock; `pip check` then proves
# the lock satisfies what pyproject.toml declares, so a stale lock fails the build.
RUN pip install "setuptools==${SETUPTOOLS_VERSION}" \
 && pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
 && /opt/gatehouse/bin/pip install --require-virtualenv --no-deps /tmp/wheels/gatehouse-*.whl \
 && /opt/gatehouse/bin/pip check \
 && /opt/gatehouse/bin/python -m compileall -q /opt/gatehouse

# The compiled hot path: a C compiler for mypyc, which lives outside the virtualenv (on
# PYTHONPATH for this step only), so neither ships. The modules land in the installed
# package (hotpath/native/lib), matched to its sources by fingerprint. gcc is not pinned:
# bookworm's security updates retire exact versions, and nothing it builds ships but our .so.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* \
 && pip install --target /tmp/mypyc "mypy==${MYPY_VERSION}" "setuptools==${SETUPTOOLS_VERSION}" \
 && PYTHONPATH=/tmp/mypyc /opt/gatehouse/bin/gatehouse native build \
 && GATEHOUSE_NATIVE=require /opt/gatehouse/bin/gatehouse native status \
 && rm -rf /tmp/mypyc


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="gatehouse" \
      org.opencontainers.image.description="Gatehouse API gateway: Granian + BlackSheep workers, shared state in Redis" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric uid/gid, so Kubernetes can check runAsNonRoot without a name lookup.
RUN groupadd --system --gid 10001 gatehouse \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin gatehouse \
 && install -d -o 10001 -g 10001 -m 0750 /etc/gatehouse /run/gatehouse/prometheus

COPY --from=build /opt/gatehouse /opt/gatehouse

# The root filesystem can be read-only: bytecode was compiled at build time, and the only
# writable paths are /tmp (TMPDIR: the run directory holding the drain marker) and the
# Prometheus multiprocess directory, both volumes (emptyDirs in Kubernetes).
# GATEHOUSE_HOST/PORT override the config file, so the listener always matches EXPOSE and
# the HEALTHCHECK below; the worker count comes from GATEHOUSE_WORKERS or the config.
# GATEHOUSE_NATIVE=require: the image always runs the compiled hot path it was built with;
# a worker that could not load it refuses to start instead of running slower unnoticed.
ENV PATH=/opt/gatehouse/bin:$PATH \
    GATEHOUSE_NATIVE=require \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    PROMETHEUS_MULTIPROC_DIR=/run/gatehouse/prometheus \
    GATEHOUSE_HOST=0.0.0.0 \
    GATEHOUSE_PORT=8080

VOLUME ["/tmp", "/run/gatehouse/prometheus"]

USER 10001:10001
WORKDIR /opt/gatehouse

# The build stage checked the compiled modules as root; check again as the user that runs
# them, loading every one, so an unreadable or broken build fails the image build, not a pod.
RUN ["gatehouse", "native", "status"]

# The gateway port only; the admin API (8081) binds loopback and is reached by port-forward.
EXPOSE 8080

# No curl in the image: the standard library's urllib asks the liveness endpoint.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + os.environ.get('GATEHOUSE_PORT', '8080') + '/health/live', timeout=2)"]

# SIGTERM starts the drain (readiness false for server.drain_delay, then in-flight
# requests get server.shutdown_grace): give `docker stop` a --stop-timeout above both.
STOPSIGNAL SIGTERM
ENTRYPOINT ["gatehouse", "run"]
CMD ["--config", "/etc/gatehouse/gatehouse.yaml"]
