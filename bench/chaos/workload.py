"""The campaign's inputs and traffic: short clips cut from real media, and jobs submitted."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np

from talkingface.media.encode import VideoWriter
from talkingface.samples import astronaut_photo, iter_template_frames_from_photo, synth_speech
from talkingface.samples import write_wav as write_mono_wav

SHARED_MEDIA = Path(
    os.environ.get("TALKINGFACE_SHARED_MEDIA")
    or Path(__file__).resolve().parents[3] / "shared" / "media"
)
REAL_AUDIO = (
    "audio_en_female_ad_10s_16k.wav",
    "audio_zh_female_5s_24k.wav",
    "audio_zh_male_acknowledgement_17s_aac.m4a",
    "audio_en_male_radio_8s_16k_stereo.wav",
)
REAL_VIDEO = (
    "video_en_female_older_512x512_talking.mp4",
    "video_en_male_asian_suit_700x700_talking.mp4",  # variable frame rate
)
TEMPLATE_SIZE_PX = 320
TEMPLATE_S = 2.0
CLIP_S = (2.5, 4.0)  # speech clip lengths: short, so hundreds of jobs fit in minutes
# test-only faults a job may carry (workers.allow_faults); `@1`: the first attempt only
STAGE_FAULTS = {
    "stage_raise": "raise_transient@1",
    "stage_block": "hang@1",
    "stage_raise_empty": "raise_empty",
}


@dataclass(frozen=True, slots=True)
class Clip:
    name: str  # a file name inside the inputs directory
    duration_s: float


@dataclass
class Inputs:
    directory: Path
    audio: list[Clip]
    video: list[Clip]
    real_media: bool


def _read_audio(path: Path, start_s: float, duration_s: float) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = int(stream.rate)
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray()[0])
    samples = np.concatenate(chunks)
    first = int(start_s * rate)
    return samples[first : first + int(duration_s * rate)].astype(np.float32), rate


def read_frames(path: Path, count: int, size_px: int) -> list[np.ndarray]:
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            square = min(frame.width, frame.height)
            image = frame.to_ndarray(format="rgb24")
            top, left = (frame.height - square) // 2, (frame.width - square) // 2
            crop = np.ascontiguousarray(image[top : top + square, left : left + square], np.uint8)
            rescaled = av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(
                width=size_px, height=size_px
            )
            frames.append(rescaled.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return frames


def write_template(path: Path, frames: list[np.ndarray], fps: float) -> None:
    with VideoWriter(path, width=TEMPLATE_SIZE_PX, height=TEMPLATE_SIZE_PX, fps=fps) as writer:
        for frame in frames:
            writer.write(frame)


def prepare_inputs(directory: Path, rng: random.Random) -> Inputs:
    """Short speech clips and 2 s templates: real media where present, plus generated ones."""
    directory.mkdir(parents=True, exist_ok=True)
    audio: list[Clip] = []
    video: list[Clip] = []
    real = SHARED_MEDIA.is_dir()
    fps = 25.0
    if real:
        for index, name in enumerate(REAL_AUDIO):
            for part in range(2):
                duration_s = round(rng.uniform(*CLIP_S), 2)
                samples, rate = _read_audio(SHARED_MEDIA / name, 0.3 + 0.8 * part, duration_s)
                clip = f"speech_{index}_{part}.wav"
                write_mono_wav(directory / clip, samples, rate)
                audio.append(Clip(clip, len(samples) / rate))
        for index, name in enumerate(REAL_VIDEO):
            frames = read_frames(SHARED_MEDIA / name, int(TEMPLATE_S * fps), TEMPLATE_SIZE_PX)
            write_template(directory / f"template_{index}.mp4", frames, fps)
            video.append(Clip(f"template_{index}.mp4", len(frames) / fps))
    speech = synth_speech(CLIP_S[0], seed=11)
    write_mono_wav(directory / "speech_synth.wav", speech.samples_f32, speech.sample_rate_hz)
    audio.append(Clip("speech_synth.wav", speech.duration_s))
    frames = list(
        iter_template_frames_from_photo(
            astronaut_photo(), frame_count=int(TEMPLATE_S * fps), size_px=TEMPLATE_SIZE_PX
        )
    )
    write_template(directory / "template_synth.mp4", frames, fps)
    video.append(Clip("template_synth.mp4", len(frames) / fps))
    return Inputs(directory, audio, video, real)


class Api:
    """HTTP calls that ride out an outage as a patient client does: a refused connection
    (server restarting) or a 503 (store restarting) is retried for a while. With several
    API processes (`urls`), a refused connection moves on to the next one, as a load
    balancer in front of them would. Every 5xx is counted by status and path, so the report
    can show what clients saw."""

    def __init__(self, urls: str | list[str], outage_s: float = 180.0) -> None:
        urls = [urls] if isinstance(urls, str) else urls
        self.clients = [httpx.Client(base_url=url, timeout=30.0) for url in urls]
        self.outage_s = outage_s
        self.server_errors: Counter[str] = Counter()  # "503 GET /v1/jobs" → count
        self.failovers = 0  # calls that moved on to another API process
        self._lock = threading.Lock()
        self._current = 0

    @property
    def http(self) -> httpx.Client:
        return self.clients[self._current]

    def _fail_over(self) -> None:
        if len(self.clients) > 1:
            with self._lock:
                self._current = (self._current + 1) % len(self.clients)
                self.failovers += 1

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:  # Any: httpx kwargs
        deadline = time.monotonic() + self.outage_s
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                self._fail_over()
                time.sleep(0.25)
                continue
            if response.status_code >= 500:
                with self._lock:
                    self.server_errors[f"{response.status_code} {method} {path}"] += 1
                if response.status_code == 503 and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
            return response

    def close(self) -> None:
        for client in self.clients:
            client.close()


@dataclass
class Submission:
    key: str  # Idempotency-Key (v1) or HeyGem code (easy)
    route: str  # "v1" or "easy"
    audio: Clip
    priority: int
    fault_kind: str | None
    job_id: str | None = None
    refused: str | None = None  # why the service refused it (a 4xx), if it did


@dataclass
class Traffic:
    """Submits jobs with mixed priorities, some carrying stage faults, some canceled later."""

    api: Api
    inputs: Inputs
    rng: random.Random
    stage_fault_share: float = 0.12
    easy_share: float = 0.15
    submissions: list[Submission] = field(default_factory=list)
    canceled: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def submit_one(self) -> Submission:
        audio = self.rng.choice(self.inputs.audio)
        video = self.rng.choice(self.inputs.video)
        priority = self.rng.choice([-10, 0, 0, 0, 5, 20])
        fault_kind = None
        if self.rng.random() < self.stage_fault_share:
            fault_kind = self.rng.choice(sorted(STAGE_FAULTS))
        route = "easy" if fault_kind is None and self.rng.random() < self.easy_share else "v1"
        submission = Submission(uuid.uuid4().hex, route, audio, priority, fault_kind)
        if route == "easy":
            self._submit_easy(submission, video)
        else:
            self._submit_v1(submission, video)
        with self.lock:
            self.submissions.append(submission)
        return submission

    def _submit_v1(self, submission: Submission, video: Clip) -> None:
        body: dict[str, Any] = {  # Any: JSON
            "audio": str(self.inputs.directory / submission.audio.name),
            "video": str(self.inputs.directory / video.name),
            "priority": submission.priority,
        }
        if submission.fault_kind:
            body["fault"] = STAGE_FAULTS[submission.fault_kind]
        headers = {"Idempotency-Key": submission.key}
        while True:
            response = self.api.call("POST", "/v1/jobs", json=body, headers=headers)
            if response.status_code == 429:  # queue full: come back as told
                time.sleep(min(5.0, float(response.headers.get("retry-after", "1"))))
                continue
            if response.status_code in (200, 202):
                submission.job_id = response.json()["id"]
            else:
                submission.refused = f"HTTP {response.status_code}: {response.text[:300]}"
            return

    def _submit_easy(self, submission: Submission, video: Clip) -> None:
        body = {
            "audio_url": submission.audio.name,  # bare names, as the HeyGem client sends
            "video_url": video.name,
            "code": submission.key,
            "pn": 1,
        }
        while True:
            reply = self.api.call("POST", "/easy/submit", json=body).json()
            if reply["code"] == 10001:  # busy
                time.sleep(1.0)
                continue
            if reply["code"] != 10000:
                submission.refused = f"HeyGem code {reply['code']}: {reply['msg']}"
            return

    def cancel_random(self) -> str | None:
        """Cancel one submitted job that has not ended (a user changing their mind)."""
        with self.lock:
            candidates = [s.job_id for s in self.submissions if s.job_id and s.route == "v1"]
        candidates = [c for c in candidates[-20:] if c not in self.canceled]
        if not candidates:
            return None
        job_id = self.rng.choice(candidates)
        response = self.api.call("POST", f"/v1/jobs/{job_id}/cancel")
        if response.status_code == 202:
            self.canceled.add(job_id)
            return job_id
        return None
