# Meetgate's container image: two stages, so the final one holds the installed package and
# Python, and no compiler, pip or source tree (the build stage compiles the wire guard's stanza
# reader, gateway/proxy/_reader.c). Runs as an unprivileged user and needs nothing
# writable but /tmp, so it runs with a read-only root filesystem (deploy/compose and
# deploy/kubernetes run it so).
#
#   docker build -t meetgate .
#   docker run --read-only --tmpfs /tmp -v ./meetgate.toml:/etc/meetgate/meetgate.toml:ro \
#       -v ./tickets:/etc/meetgate/tickets:ro -p 127.0.0.1:8000:8000 meetgate
#
# The config and the RS256 ticket keys it names (private_key_file = "tickets/<kid>.pem", next to
# it) must be readable by user 10001: deploy/compose/setup writes both that way.
#
# Pin the base by digest in production (`python:3.12-slim-bookworm@sha256:…`).
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# What compiling the stanza reader needs: a C compiler, libc's and libexpat's headers (the image's
# Python carries its own). Not pinned: Debian drops a superseded version from its mirrors, and
# this stage is thrown away.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libexpat1-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python -m venv /opt/meetgate
COPY pyproject.toml requirements.lock README.md ./
COPY gateway ./gateway
COPY templates ./templates
# Wheels only for the dependencies: one that would need compiling fails the build instead of
# compiling here; the versions the tests ran with (requirements.lock). Only Meetgate itself is
# built from source. Its stanza reader is optional to pip (without it the guard reads in Python,
# slower), not to the image: the build fails if it did not compile (-I: the installed package, not
# /src, is imported). Then byte-compile, and drop the installers from the environment.
# tests/deploy/test_clean_install.py does this same install.
RUN /opt/meetgate/bin/pip install --only-binary=:all: --no-compile -c requirements.lock . \
    && /opt/meetgate/bin/python -I -c "import gateway.proxy._reader" \
    && /opt/meetgate/bin/python -m compileall -q -j 0 /opt/meetgate \
    && /opt/meetgate/bin/pip uninstall -y -q pip setuptools

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="Meetgate" \
      org.opencontainers.image.description="A self-hosted, hardened front door for Jitsi Meet" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"
COPY --from=build /opt/meetgate /opt/meetgate
# The stanza reader links the system's libexpat, the runtime library alone (libexpat1). The
# python:*-slim images no longer carry it: their Python uses its bundled expat since late 2024
# (docker-library/python#984, #989), so it is installed here, and the reader imported to prove it
# loads. The base image's own pip goes too: nothing in the running image can fetch or build
# packages.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libexpat1 \
    && rm -rf /var/lib/apt/lists/* \
    && /opt/meetgate/bin/python -I -c "import gateway.proxy._reader" \
    && python -m pip uninstall -y -q pip
# The read-only root filesystem: no .pyc written at run time (they were compiled above), HOME on
# the /tmp tmpfs. The public listener on all container interfaces (override in meetgate.toml
# loses to this: MEETGATE_* variables win); the admin API stays on the container's loopback,
# for `docker exec … meetgate room …`.
ENV PATH=/opt/meetgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MEETGATE_CONFIG=/etc/meetgate/meetgate.toml \
    MEETGATE_LISTEN__HOST=0.0.0.0
# A numeric user with no entry in /etc/passwd and no shell: nothing to log in as.
USER 10001:10001
EXPOSE 8000
# The health page answers "ok" once the store answers (port 8000: keep [listen] port at 8000).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/_meetgate/health', timeout=4).read() != b'ok')"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["meetgate", "serve"]
