"""The target of a spawned worker process: imports the worker, and with it the pipeline, there.

The local executor runs in the API/scheduler process and must name a target for
`multiprocessing`'s spawn; naming `worker.worker_main` directly would import the whole pipeline
(PyAV, OpenCV, SciPy, the face detector) into that process at start-up. This module is light:
the heavy import happens in the child only.
"""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import Any


def run_worker(conn: Connection, settings_json: dict[str, Any], worker_id: str) -> None:
    """Run `worker_main` in this (spawned) process."""
    from talkingface.executors.worker import worker_main

    worker_main(conn, settings_json, worker_id)
