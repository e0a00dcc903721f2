# syntax=docker/dockerfile:1
# Container image for ollama-probe-exporter. Build from the repository root:
#   docker build -t ollama-probe-exporter:0.1.0 .
# Stage 1 builds the project wheel and installs it with its dependencies into /opt/venv.
# Stage 2 copies only that venv onto a clean slim base: no compiler, no pip cache, no sources.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install --compile /wheels/*.whl

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ollama-probe-exporter" \
      org.opencontainers.image.description="Prometheus exporter that runs scheduled streaming probe generations against Ollama and exports TTFT, tokens/s and errors" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# pip is not needed at run time; the numeric user lets Kubernetes check runAsNonRoot.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin exporter
COPY --from=builder /opt/venv /opt/venv
COPY deploy/docker/config.yml /etc/ollama-probe-exporter/config.yml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 10434
# No curl in the slim image: the venv's Python asks the health endpoint (exit 1 on any error).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:10434/-/healthy', timeout=4)"]
ENTRYPOINT ["ollama-probe-exporter"]
CMD ["--config.file", "/etc/ollama-probe-exporter/config.yml"]
