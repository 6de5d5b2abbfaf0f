# deskbot as a container: the README's install, SQLite in /data by default.
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN python3 -m venv /app/.venv && /app/.venv/bin/pip install -q .
# Not root. /data holds the SQLite database and the knowledge base's embedding cache; a new
# named volume takes this ownership from the image.
RUN useradd --system --no-create-home --home-dir /data deskbot \
    && mkdir -p /data && chown deskbot /data
USER deskbot
ENV DESKBOT_DATABASE_URL=sqlite+aiosqlite:////data/deskbot.db \
    DESKBOT_KB_CACHE_DIR=/data/kb-cache
VOLUME /data
EXPOSE 8443
STOPSIGNAL SIGTERM
CMD ["/app/.venv/bin/deskbot", "run"]
