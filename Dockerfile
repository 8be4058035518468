# mns-consumer container image: the daemon alone, as a non-root user, configured by a mounted file.
#
#   docker build -t mns-consumer:0.1.0 .
#   docker run -d --name mns-consumer --stop-timeout 60 \
#       -v "$PWD/config.yaml:/etc/mns-consumer/config.yaml:ro" -v mns-consumer-state:/var/lib/mns-consumer \
#       -e ALIBABA_CLOUD_ACCESS_KEY_ID -e ALIBABA_CLOUD_ACCESS_KEY_SECRET -p 127.0.0.1:9464:9464 \
#       mns-consumer:0.1.0
#   docker run --rm -v "$PWD/config.yaml:/etc/mns-consumer/config.yaml:ro" mns-consumer:0.1.0 \
#       check-config /etc/mns-consumer/config.yaml
#
# - Secrets never enter the image: pass them as environment variables (or a secrets manager's) and
#   write ${ALIBABA_CLOUD_ACCESS_KEY_SECRET}-style references in the configuration.
# - The configuration must set `http.listen: 0.0.0.0:9464` for Prometheus to scrape from outside;
#   the HEALTHCHECK asks 127.0.0.1:9464 from inside, which works either way (not with `listen: null`).
# - Stopping drains for up to drain_timeout_seconds (30 s): give it more than Docker's default 10 s
#   (`--stop-timeout 60`, Compose `stop_grace_period: 60s`, Kubernetes terminationGracePeriodSeconds).
# - State (SQLite, file sinks, dead letters) belongs in /var/lib/mns-consumer, a volume: dead letters
#   have already been deleted from MNS, so losing that folder loses them.
# - The base image is pinned by tag; pin it by digest as well (python:3.11.13-slim-bookworm@sha256:...)
#   in a registry you control for byte-for-byte reproducible builds.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: the wheel, from the package sources only (see .dockerignore) -----------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mns_consumer ./mns_consumer
RUN pip wheel --no-deps --wheel-dir /dist .

# --- runtime: a virtualenv holding the wheel, its dependencies and every optional sink ---------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/mns-consumer/bin:$PATH \
    MNS_CONSUMER_CONFIG=/etc/mns-consumer/config.yaml \
    MALLOC_ARENA_MAX=2
# Only the wheel crosses over from the build stage, through a bind mount, so no layer keeps it.
RUN --mount=type=bind,from=build,source=/dist,target=/dist \
    set -- /dist/mns_consumer-*.whl \
    && python -m venv /opt/mns-consumer \
    && /opt/mns-consumer/bin/pip install "$1[postgres,mysql,s3]" \
    && groupadd --system --gid 10001 mns-consumer \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/mns-consumer --no-create-home \
        --shell /usr/sbin/nologin mns-consumer \
    && install -d -m 0700 -o 10001 -g 10001 /var/lib/mns-consumer \
    && install -d -m 0755 /etc/mns-consumer \
    && mns-consumer --version

USER 10001:10001
WORKDIR /var/lib/mns-consumer
VOLUME ["/var/lib/mns-consumer"]
# 9464: /metrics and probes; 8080: the HTTP push receiver, when a push section is configured.
EXPOSE 9464 8080
# Liveness (/healthz): fails only when a poller is stuck; a stopped daemon fails to connect.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["mns-consumer", "health", "--url", "http://127.0.0.1:9464/healthz", "--timeout-seconds", "3"]
# Exec form, so the daemon is PID 1 and receives SIGTERM itself: it drains and exits 0 (a second
# SIGTERM makes it leave at once with code 3). It handles every signal it needs and starts no
# children, so no init process is needed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["mns-consumer"]
CMD ["run", "--config", "/etc/mns-consumer/config.yaml"]
