"""HeyGem's face2face image starts with `python /code/app_local.py`; in the talkingface image
this file starts `talkingface serve` instead, so a compose file that keeps that command works
when only its `image:` line changes (install.sh puts it at /code/app_local.py)."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    os.execvp("talkingface", ["talkingface", "serve", *sys.argv[1:]])
