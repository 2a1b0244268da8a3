# syntax=docker/dockerfile:1
# Build: a virtualenv with the pinned dependencies. Runtime: that venv plus the source, non-root.

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY todoapi ./todoapi
# Dependencies only: the app runs from /app beside migrations/, like the Procfile does.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -c constraints.txt . \
    && /opt/venv/bin/pip uninstall -y todoapi

FROM python:3.11.14-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    APP_ENV=production \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8000 \
    DATABASE_URL=sqlite:////app/data/todo.db \
    PROMETHEUS_MULTIPROC_DIR=/tmp/todoapi-metrics
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin todoapi
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY todoapi ./todoapi
COPY migrations ./migrations
COPY wsgi.py worker.py gunicorn.conf.py Procfile ./
RUN mkdir -p /app/data /tmp/todoapi-metrics && chown todoapi:todoapi /app/data /tmp/todoapi-metrics
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=2)"]
# The Procfile's web line; `release` and `worker` run the same image with another command.
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
