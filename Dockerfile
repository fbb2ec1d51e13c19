# syntax=docker/dockerfile:1
#
# opsbot container image.
#
#   docker build -t ghcr.io/opsbot/opsbot:0.1.0 .
#   docker run --rm ghcr.io/opsbot/opsbot:0.1.0 version
#
# Two stages: the builder resolves and installs everything into a virtualenv under the exact
# versions of constraints.txt; the runtime stage copies only that virtualenv, so pip's cache,
# the build frontend and the source tree never reach the image that runs in production.
#
# Both stages use the same base image on purpose: a virtualenv records the absolute path of its
# interpreter (/usr/local/bin/python3.11), so it only works on an identical Python install.
# For reproducible releases pin the base by digest (python:3.11-slim@sha256:...) in both FROMs.

FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src

# Everything setuptools needs to build the wheel: the metadata (pyproject.toml names README.md
# as the long description, so the build fails without it), the lock file and the three
# packages. Runbooks and policies are data, copied into the runtime stage separately.
COPY pyproject.toml README.md constraints.txt ./
COPY bot ./bot
COPY handlers ./handlers
COPY migrations ./migrations

# -c pins every transitive dependency to the lock file, so the image runs exactly what CI
# tested. All dependencies ship manylinux wheels (psycopg via psycopg[binary]), so no compiler
# is needed; if one ever has to build from source, install build-essential here, never in
# the runtime stage. pip byte-compiles what it installs, which matters because the runtime
# stage forbids writing bytecode and runs on a read-only root filesystem. The import check
# fails the build, not the first pod, when a package or its data is missing from the wheel.
# (No BuildKit cache mount: the Dockerfile stays buildable by kaniko and the classic builder.)
# `cd /` so the check imports the installed packages, not the source tree in /src.
RUN pip install -c constraints.txt . \
    && cd / && python -c "import bot.cli, handlers.webhooks, migrations, bot.db.migrate; bot.db.migrate.head_revision()"


FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="opsbot" \
      org.opencontainers.image.description="Slack incident bot for Kubernetes on-call teams" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/opsbot/opsbot"

# A fixed numeric UID/GID: Kubernetes' runAsNonRoot can only verify a numeric USER, and the
# manifests in deploy/kubernetes set the same runAsUser/runAsGroup/fsGroup (10001). The
# account has no home directory and no login shell; the data directory is the only path it
# owns.
RUN groupadd --system --gid 10001 opsbot \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin opsbot \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/opsbot

COPY --from=builder /opt/venv /opt/venv

# Runbooks and policies stay owned by root and read-only for the bot: the process that runs
# remediations must not be able to rewrite the rules that gate them. Deployments that
# customise them mount a ConfigMap over these paths.
COPY runbooks /app/runbooks
COPY policies /app/policies

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in Kubernetes, and the venv is
# already byte-compiled. PYTHONUNBUFFERED: log lines reach `kubectl logs` as they are written.
# The HTTP server listens on all interfaces inside the container; the Service maps 80 -> 8080.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPSBOT_HTTP_HOST=0.0.0.0 \
    OPSBOT_HTTP_PORT=8080 \
    OPSBOT_DATA_DIR=/var/lib/opsbot \
    OPSBOT_RUNBOOKS_DIR=/app/runbooks \
    OPSBOT_POLICIES_DIR=/app/policies

WORKDIR /app

USER 10001:10001

EXPOSE 8080

# No HEALTHCHECK: Kubernetes probes /healthz and /readyz (deploy/kubernetes/base/deployment.yaml).
# Migrations are a separate step (`opsbot db upgrade`, deploy/kubernetes/base/migration-job.yaml),
# never run on start, so two replicas starting together cannot race on the schema.
ENTRYPOINT ["opsbot"]
CMD ["serve"]
