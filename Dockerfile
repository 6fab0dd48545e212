# syntax=docker/dockerfile:1
# The costwarden gateway: `docker build -t costwarden .`, then
#   docker run -p 8700:8700 --stop-timeout 60 -v costwarden-data:/var/lib/costwarden \
#     -v "$PWD/costwarden.yaml:/etc/costwarden/costwarden.yaml:ro" -e COSTWARDEN_ADMIN_TOKEN=... costwarden
# (paths in that config absolute, under /var/lib/costwarden). Pin PYTHON_IMAGE to a digest to rebuild
# byte for byte.
# Dependencies come from requirements/runtime.lock (exact versions, hash-checked), the same pins the
# tests run on. Secrets are never baked in: they arrive as environment variables at run time and the
# config file names them as ${VAR}. See docs/deploy.md.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/costwarden
WORKDIR /src
# The lock first: this layer is rebuilt only when a pin changes, not on every source edit.
COPY requirements/runtime.lock requirements/runtime.lock
RUN /opt/costwarden/bin/pip install --require-hashes --no-deps -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY src ./src
# Then the package (its dependencies are all in the lock: pip check proves it), a smoke import, and
# pip itself goes: the image has no installer at run time.
RUN /opt/costwarden/bin/pip install --no-deps . \
 && /opt/costwarden/bin/pip check \
 && /opt/costwarden/bin/python -c "import costwarden.cli.main, asyncpg, redis, uvloop" \
 && /opt/costwarden/bin/python -m pip uninstall --quiet --yes pip setuptools

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="costwarden" \
      org.opencontainers.image.description="Metering gateway, ledger and reports for the cost of AI inference" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid so that Kubernetes' runAsNonRoot can check it and a shared spool volume
# (fsGroup) is writable by every replica.
RUN groupadd --system --gid 10001 costwarden \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/costwarden \
      --shell /usr/sbin/nologin costwarden \
 && mkdir -p /etc/costwarden /var/lib/costwarden/spool \
 && chown -R 10001:10001 /var/lib/costwarden
COPY --from=build /opt/costwarden /opt/costwarden
ENV PATH=/opt/costwarden/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    COSTWARDEN_HEALTH_URL=http://127.0.0.1:8700/healthz \
    COSTWARDEN_CONFIG=/etc/costwarden/costwarden.yaml
WORKDIR /var/lib/costwarden
USER 10001:10001
EXPOSE 8700
# Liveness only (the process answers); readiness (/readyz: ledger reachable) is the orchestrator's.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['COSTWARDEN_HEALTH_URL'], timeout=2)"]
# SIGTERM: stop accepting, finish in-flight requests (up to 30 s), flush the ledger, exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["costwarden"]
CMD ["serve", "--config", "/etc/costwarden/costwarden.yaml", "--host", "0.0.0.0", "--port", "8700"]
