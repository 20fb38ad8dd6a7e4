# syntax=docker/dockerfile:1
# Build: docker build -t loopwright .
# Run:   docker run -p 8000:8000 -v loopwright-data:/data -e OPENAI_API_KEY=... loopwright

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY requirements.txt ./
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.txt
COPY pyproject.toml README.md ./
COPY app ./app
COPY loops ./loops
COPY checkers ./checkers
COPY triggers ./triggers
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM python:3.11-slim AS runtime
# git: workspaces are git checkouts; tini: signals reach the service, zombies are reaped.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git tini ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 loopwright \
    && mkdir -p /data /app/workflows && chown loopwright:loopwright /data
COPY --from=build /opt/venv /opt/venv
COPY workflows /app/workflows
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    OPIK_DEFAULT_FLUSH_TIMEOUT=5 \
    LOOPWRIGHT_DATA_DIR=/data \
    LOOPWRIGHT_WORKFLOWS_DIR=/app/workflows \
    LOOPWRIGHT_HOST=0.0.0.0 \
    LOOPWRIGHT_PORT=8000
USER loopwright
WORKDIR /app
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
ENTRYPOINT ["tini", "--", "loopwright"]
CMD ["serve"]
