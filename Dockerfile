FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY backend backend
COPY worker worker
COPY frontend frontend
COPY alembic alembic
RUN pip install --no-cache-dir -e .
# Everything runs as an unprivileged user that owns only the data dir.
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin autodl \
    && mkdir -p /data && chown autodl:autodl /data
USER autodl
ENV AUTODL_DATA_DIR=/data
EXPOSE 8000
CMD ["autodl", "serve", "--host", "0.0.0.0", "--port", "8000"]
