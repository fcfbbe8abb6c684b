# syntax=docker/dockerfile:1
# PromptLedger image: `promptledger serve` (default), `promptledger worker`, `promptledger migrate`.
#
#   docker build -t promptledger .
#   docker run --rm -p 8000:8000 -e DATABASE_URL=... -e REDIS_URL=... -e API_KEY=... promptledger
#
# Two stages: the build stage installs the locked dependencies and the package into a virtual
# environment with uv; the runtime stage copies only that environment (no uv, no compiler, no
# sources, no tests) onto the same slim Python base and runs it as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first, from the lock file alone: this layer is rebuilt only when uv.lock or
# pyproject.toml change, not on every source edit.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project
# Then the package itself, installed (not editable) into the same environment.
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="PromptLedger" \
      org.opencontainers.image.description="Prompt registry and LLM execution ledger"
RUN groupadd --system --gid 10001 promptledger \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
            --shell /usr/sbin/nologin promptledger \
 && install -d -o 10001 -g 10001 -m 0700 /data
COPY --from=build --chown=10001:10001 /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROMPTLEDGER_HOME=/data
WORKDIR /data
# numeric, so orchestrators can verify runAsNonRoot
USER 10001:10001
EXPOSE 8000
# Liveness only (no dependency touched); orchestrators should probe /health/ready for traffic.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["promptledger"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
