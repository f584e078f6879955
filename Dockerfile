# One image for all three services; the command picks the service (ingest, sessionizer, metrics).
FROM python:3.11-slim AS base
ENV PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY contracts ./contracts
COPY klantreis ./klantreis
COPY services ./services
RUN uv sync --locked --no-dev --no-editable
ENV PATH=/opt/venv/bin:$PATH KLANTREIS_HOST=0.0.0.0
USER nobody
ENTRYPOINT ["klantreis"]
