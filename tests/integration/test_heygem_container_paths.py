"""A HeyGem client's container paths on a real server installed outside face2face's layout:
api.heygem_path_map maps /code/data to a directory here, the job runs to status 2 and the
result lands in the mapped temp folder, where the client reads it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.service_fixtures import Service, wait_until


def _query(service: Service, code: str) -> dict[str, Any]:
    answer: dict[str, Any] = service.http.get("/easy/query", params={"code": code}).json()
    return answer


def test_container_paths_resolve_through_the_path_map_and_the_job_succeeds(
    service_factory: Callable[..., Service],
    tmp_path: Path,
    speech_wav: Path,
    short_template_clip: Path,
) -> None:
    heygem = tmp_path / "heygem_data" / "face2face"  # what compose mounts at /code/data
    (heygem / "temp").mkdir(parents=True)
    (heygem / "face2face").mkdir()
    shutil.copy(speech_wav, heygem / "temp" / "voice.wav")
    shutil.copy(short_template_clip, heygem / "face2face" / "model.mp4")
    service = service_factory(
        extra_env={
            "TALKINGFACE_API__HEYGEM_PATH_MAP": json.dumps({"/code/data": str(heygem)}),
            "TALKINGFACE_API__HEYGEM_TEMP_DIR": str(heygem / "temp"),
        }
    )
    body = {
        "audio_url": "/code/data/temp/voice.wav",
        "video_url": "/code/data/face2face/model.mp4",
        "code": "c0ffee00-0000-4000-8000-000000000001",
        "pn": 1,
    }

    submitted = service.http.post("/easy/submit", content=json.dumps(body)).json()
    assert submitted == {"code": 10000, "data": {}, "msg": 10000, "success": True}
    done = wait_until(
        lambda: (
            (answer := _query(service, body["code"]))["data"].get("status") in (2, 3) and answer
        ),
        timeout_s=120,
        what="the HeyGem job to finish",
    )

    assert done["data"]["status"] == 2, done
    result = heygem / "temp" / done["data"]["result"].lstrip("/")
    assert result.name == f"{body['code']}-r.mp4" and result.stat().st_size > 1000


def test_container_paths_outside_the_map_or_escaping_it_are_10002(
    service_factory: Callable[..., Service], tmp_path: Path
) -> None:
    heygem = tmp_path / "heygem"
    (heygem / "temp").mkdir(parents=True)
    (tmp_path / "secret.wav").write_bytes(b"RIFF")
    service = service_factory(
        extra_env={"TALKINGFACE_API__HEYGEM_PATH_MAP": json.dumps({"/code/data": str(heygem)})}
    )

    for audio in ("/code/other/voice.wav", "/code/data/../../secret.wav", str(tmp_path / "x")):
        body = {"audio_url": audio, "video_url": "/code/data/temp/m.mp4", "code": "c-bad-1"}
        answer = service.http.post("/easy/submit", json=body).json()
        assert answer["code"] == 10002, (audio, answer)
        assert answer["msg"].startswith("参数异常: audio_url: "), answer
