# wa-hub: the hub in one image. Build: `docker build -t wa-hub .`; run: see docker-compose.yml and
# docs/deploy.md. Everything comes from the Python and Debian package registries (no other downloads).
# The image runs as the unprivileged user wahub (uid 10001); the only writable place is /data
# (SQLite file, whatsmeow session files, api-key), which is the one volume.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/wa-hub \
 && /opt/wa-hub/bin/pip install --no-cache-dir . \
 && find /opt/wa-hub -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11-slim-bookworm
# libmagic1: python-magic, a dependency of neonize (whatsmeow engine), loads it at import.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmagic1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 wahub \
 && useradd --system --uid 10001 --gid wahub --home-dir /data --no-create-home --shell /usr/sbin/nologin wahub \
 && mkdir -p /data \
 && chown wahub:wahub /data \
 && chmod 700 /data
COPY --from=build /opt/wa-hub /opt/wa-hub
ENV PATH=/opt/wa-hub/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/data \
    LOG_FORMAT=json \
    WAHUB_ENGINE=whatsmeow
VOLUME ["/data"]
EXPOSE 3000
USER 10001:10001
WORKDIR /data
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('PORT', '3000'), timeout=4)"]
STOPSIGNAL SIGTERM
CMD ["wa-hub", "serve"]
