# One image for both services; the command picks which one runs (see docker-compose.yml):
#   docker build -t interlink-docker:local .
#   docker run ... interlink-docker:local docker-sidecar      # as root: it drives the engine
#   docker run ... interlink-docker:local                     # interlink-api, as `interlink`
#
# BASE_IMAGE: any image with Python 3.11 or later and its venv module (the official python
# images; Debian with python3-venv), e.g. a site's mirror of it.
# PIP_INSTALL_OPTIONS: more options for pip, e.g. an offline build from wheels put in the
# build context: --build-arg PIP_INSTALL_OPTIONS="--no-index --find-links=/src/wheelhouse".
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_INSTALL_OPTIONS=""
COPY . /src
# A virtualenv, so the programs and their libraries are one directory that the runtime stage
# copies whole, apart from the base's own Python packages.
RUN python3 -m venv /opt/interlink \
 && /opt/interlink/bin/pip install --no-cache-dir --disable-pip-version-check \
      ${PIP_INSTALL_OPTIONS} /src \
 && /opt/interlink/bin/interlink --version

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="interlink-docker" \
      org.opencontainers.image.description="interLink API server (OIDC built in) and Docker sidecar for a GPU node" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
COPY --from=build /opt/interlink /opt/interlink
# The API server's user; fixed ids so that a key file on the host can be given to it
# (chgrp 10001 tls.key; chmod 0640 tls.key).
RUN groupadd --system --gid 10001 interlink \
 && useradd --system --uid 10001 --gid interlink --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin interlink
ENV PATH=/opt/interlink/bin:$PATH \
    INTERLINKCONFIGPATH=/etc/interlink/InterLinkConfig.yaml \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER interlink
# The service PID 1 runs, asked where the config says it listens: the API server's /readyz
# (its plugin answers), the sidecar's /healthz (its recovery is done).
HEALTHCHECK --interval=10s --timeout=15s --start-period=60s --retries=3 \
  CMD ["interlink", "health"]
CMD ["interlink-api"]
