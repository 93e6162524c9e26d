# The images of both services, one target each (the build context is the repository root):
#
#   docker build --target inventory -t storefront-inventory .
#   docker build --target checkout -t storefront-checkout .
#
# BASE_IMAGE is any Debian-like image with Python 3.11+ and its venv module; the builder and
# the final stages must use the same one (the venv links to its interpreter). The default is
# pinned by digest as well as tag, so that a rebuild never gets a different base; `make
# images` (tools/build-images.sh) passes a locally built base, as no registry answers there.
#
# Every package comes from a hashed file exported from uv.lock (requirements/, written by
# `make lock`), installed with --require-hashes and --no-deps: the images hold exactly the
# versions the tests ran, whatever day they are built.
#
# The final images hold the base, a non-root user and /opt/venv: the project and its
# dependencies, installed from a wheel and byte-compiled, with no pip, no build tools and no
# source tree. They run as UID/GID 10001 with a read-only root filesystem (nothing is written
# at run time; Python writes no bytecode). The exec-form entrypoint makes uvicorn PID 1, so
# SIGTERM reaches it directly: it stops accepting connections and lets in-flight requests
# finish (up to 20 s) before it exits 0.
# No BuildKit-only syntax, so the classic builder (DOCKER_BUILDKIT=0) builds it too.
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first, from the locked files alone: this layer is reused until they change.
# /opt/build holds pip and the build backend; /opt/venv, what the images ship, gets no pip.
COPY requirements/build.txt requirements/runtime.txt /tmp/
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install --quiet --require-hashes --no-deps -r /tmp/build.txt \
    && python3 -m venv --without-pip /opt/venv \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --quiet --require-hashes \
        --no-deps -r /tmp/runtime.txt
# Then the code: a wheel (not an editable install), installed without touching the network.
COPY pyproject.toml README.md ./
COPY cartlib ./cartlib
COPY inventory ./inventory
COPY checkout ./checkout
RUN /opt/build/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --quiet --no-deps /tmp/wheels/*.whl \
    && /opt/build/bin/pip --python /opt/venv/bin/python check \
    && /opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib \
    && /opt/venv/bin/python -c 'import cartlib, checkout.app, inventory.app'

# The non-root user every final image runs as.
FROM ${BASE_IMAGE} AS nonroot
RUN groupadd --gid 10001 storefront \
    && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin storefront

FROM nonroot AS runtime
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0
WORKDIR /app
USER 10001:10001

# Labels last, so a new revision reuses every layer above.
FROM runtime AS inventory
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="storefront-inventory" \
      org.opencontainers.image.description="storefront inventory: guest sessions, the catalog and cart changes, over a shared Redis" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
EXPOSE 8001
ENTRYPOINT ["python", "-m", "inventory"]

FROM runtime AS checkout
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="storefront-checkout" \
      org.opencontainers.image.description="storefront checkout: reads carts and checks them out into orders, over a shared Redis" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
EXPOSE 8002
ENTRYPOINT ["python", "-m", "checkout"]

# The load generator (the chart's loadgenerator.enabled; `make images` builds it): locust from
# the lock's `loadgen` group (requirements/loadgen.txt) in a venv of its own, and bench/locustfile.py, which imports only
# locust and the standard library (not the project). It runs headless until stopped; the
# environment sets the rest: LOCUST_HOST (the inventory URL), CHECKOUT_URL, LOCUST_USERS,
# LOCUST_SPAWN_RATE, optionally LOCUST_RUN_TIME and LOADGEN_CHECKOUT=false (no checkouts).
# Same user and read-only root as the services: locust writes nothing but to /tmp.
FROM ${BASE_IMAGE} AS loadgenerator-builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements/loadgen.txt /tmp/
RUN python3 -m venv /opt/build \
    && python3 -m venv --without-pip /opt/venv \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --quiet --require-hashes \
        --no-deps -r /tmp/loadgen.txt \
    && /opt/build/bin/pip --python /opt/venv/bin/python check \
    && /opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib \
    && /opt/venv/bin/python -c 'import locust'

FROM nonroot AS loadgenerator
COPY --from=loadgenerator-builder /opt/venv /opt/venv
COPY bench/locustfile.py /app/locustfile.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOCUST_USERS=10 \
    LOCUST_SPAWN_RATE=1
WORKDIR /app
USER 10001:10001
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="storefront-loadgenerator" \
      org.opencontainers.image.description="storefront load generator: locust shoppers walk the shop flow against inventory and checkout" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENTRYPOINT ["locust", "-f", "/app/locustfile.py", "--headless"]
