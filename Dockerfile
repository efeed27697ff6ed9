# talkingface as a drop-in for HeyGem's face2face container: port 8383, HeyGem's folder
# mounted at /code/data, inputs and results in /code/data/temp (see docker-compose.yml).
# Every install step is in deploy/install.sh, which `make image-check` also runs in a fresh
# Debian root, so the recipe is exercised where no container engine exists.
FROM debian:bookworm-slim

COPY . /opt/talkingface/src
RUN PIP_NO_CACHE_DIR=1 /opt/talkingface/src/deploy/install.sh

ENV TALKINGFACE_CONFIG=/etc/talkingface/talkingface.toml \
    PATH=/opt/talkingface/venv/bin:$PATH
WORKDIR /code
VOLUME /code/data
EXPOSE 8383
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8383/healthz', timeout=4)"]
# serve stops on SIGTERM: open requests get api.shutdown_timeout_s, workers are stopped and
# running jobs return to the queue for the next start.
STOPSIGNAL SIGTERM
CMD ["talkingface", "serve"]
