# Gateway image: API, Slack, scheduler and the OpenAI backend. No torch: the training stack lives
# in the trainer image, so this one stays small and starts fast.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TUNEBRIDGE_HOST=0.0.0.0 \
    TUNEBRIDGE_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tunebridge ./tunebridge
COPY storage ./storage
COPY backends ./backends
COPY gateway ./gateway
COPY bot ./bot
# EXTRAS=ray adds Ray's job client for TUNEBRIDGE_LOCAL_EXECUTOR=ray (still no torch).
ARG EXTRAS=""
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" && useradd --create-home tunebridge \
    && mkdir /data && chown tunebridge /data
USER tunebridge
VOLUME /data
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["tunebridge", "serve"]
