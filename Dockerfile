# deskbot as a container: the README's install, SQLite in /data by default.
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN python3 -m venv /app/.venv && /app/.venv/bin/pip install -q .
ENV DESKBOT_DATABASE_URL=sqlite+aiosqlite:////data/deskbot.db
VOLUME /data
EXPOSE 8443
STOPSIGNAL SIGTERM
CMD ["/app/.venv/bin/deskbot", "run"]
