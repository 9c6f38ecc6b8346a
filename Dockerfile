# One image for both services; the command picks which one runs.
FROM python:3.11-slim
WORKDIR /opt/interlink
COPY pyproject.toml README.md ./
COPY interlink_common ./interlink_common
COPY interlink_api ./interlink_api
COPY docker_sidecar ./docker_sidecar
RUN pip install --no-cache-dir . && useradd --system --no-create-home interlink
ENV INTERLINKCONFIGPATH=/etc/interlink/InterLinkConfig.yaml
