"""The quality matrix's cases: the real talking videos driven by English and Mandarin, plus
inputs built in code, written once into an inputs directory (kept when already there).

Built inputs (frame numbers at the pipeline's 25 fps; the meter picks them, picks.json says
which it picked):
  photo_closed.png  video_en_male_asian_suit frame 79: the lowest opening in the clip (lips shut)
  photo_smile.png   video_en_female_512x512_mpeg4 frame 68: the widest mouth (a smile, teeth)
  photo_open.png    video_en_female_older frame 102: the widest opening
  idle.mp4          photo_closed's frame for 3 s with slight head motion (±2 px, ±0.5°): the
                    mouth never opens, and the clip has no sound
  face_leaves.mp4   the hostile suite's clip (tests/hostile/conftest.py): 12 frames of the
                    astronaut, then 13 without a face
  speech_0.2s.wav   the loudest 0.2 s of the English clip's first 3 s

Only modules that also exist in the engine at commit 2f120c4 are imported here, so older
engine code can build and render the same cases (quality_matrix.py --render-only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import cv2
import numpy as np

from bench.clips import FPS, faceless_frame, template_frames, write_clip
from talkingface.errors import NoFaceError
from talkingface.media.audio import load_audio
from talkingface.media.decode import iter_frames
from talkingface.media.probe import choose_output_fps, probe
from talkingface.mouth_meter import MouthMeter
from talkingface.samples import write_wav

ENGLISH = "audio_en_male_radio_8s_16k_stereo.wav"
MANDARIN = "audio_zh_female_5s_24k.wav"
TALKING_VIDEOS = {  # short name -> file in shared/media (MANIFEST.md)
    "older": "video_en_female_older_512x512_talking.mp4",
    "suit": "video_en_male_asian_suit_700x700_talking.mp4",
    "bluebg": "video_en_female_bluebg_700x700_talking.mp4",
    "mpeg4": "video_en_female_512x512_mpeg4_talking.mp4",
    "seated": "video_female_seated_1080x1920_hevc_talking.mp4",
    "glasses": "video_male_asian_glasses_720x1280_noaudio_talking.mp4",
}
IDLE_S = 3.0
SHORT_AUDIO_S = 0.2


class Kind(Enum):
    """What a case is; it decides which thresholds the matrix holds it to."""

    VIDEO = "video"  # a real talking video
    PHOTO = "photo"
    IDLE = "idle"  # a clip whose mouth stays closed
    HOSTILE = "hostile"  # the face leaves the frame
    SHORT = "short"  # 0.2 s of audio


@dataclass(frozen=True, slots=True)
class Case:
    """One render: a template, a driving audio, and the output's file stem."""

    name: str
    kind: Kind
    template: Path
    audio: Path


@dataclass(frozen=True, slots=True)
class _PhotoPick:
    """Which frame of which clip becomes a photo, by the independent opening."""

    file_name: str
    source: str  # key of TALKING_VIDEOS
    rule: str  # "closed": lowest opening; "smile": widest mouth; "open": highest opening


PHOTO_PICKS = (
    _PhotoPick("photo_closed.png", "suit", "closed"),
    _PhotoPick("photo_smile.png", "mpeg4", "smile"),
    _PhotoPick("photo_open.png", "older", "open"),
)


def build_cases(media: Path, inputs: Path, mandarin_name: str = MANDARIN) -> list[Case]:
    """Every case of the matrix, building the made-in-code inputs under `inputs` if absent;
    `mandarin_name` picks the Mandarin drive (a file in `media`)."""
    inputs.mkdir(parents=True, exist_ok=True)
    english, mandarin = media / ENGLISH, media / mandarin_name
    cases = [
        Case(f"{short}__{lang}", Kind.VIDEO, media / video, audio)
        for short, video in TALKING_VIDEOS.items()
        for lang, audio in (("en", english), ("zh", mandarin))
    ]
    photos = _build_photos(media, inputs)
    cases += [Case(f"{path.stem}__en", Kind.PHOTO, path, english) for path in photos]
    cases.append(Case("idle__en", Kind.IDLE, _build_idle(photos[0], inputs), english))
    cases.append(Case("face_leaves__en", Kind.HOSTILE, _build_face_leaves(inputs), english))
    short = _build_short_audio(english, inputs)
    cases.append(Case("older__short", Kind.SHORT, media / TALKING_VIDEOS["older"], short))
    return cases


def _build_photos(media: Path, inputs: Path) -> list[Path]:
    paths = [inputs / pick.file_name for pick in PHOTO_PICKS]
    if all(path.is_file() for path in paths):
        return paths
    chosen: dict[str, int] = {}
    for pick, path in zip(PHOTO_PICKS, paths, strict=True):
        index, frame = _pick_frame(media / TALKING_VIDEOS[pick.source], pick.rule)
        cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        chosen[pick.file_name] = index
    (inputs / "picks.json").write_text(json.dumps(chosen, indent=1))
    return paths


def _pick_frame(video: Path, rule: str) -> tuple[int, np.ndarray]:
    """(frame number, frame) of the clip's frame that best fits `rule`, read by the meter."""
    info = probe(video)
    meter = MouthMeter()
    best: tuple[float, int, np.ndarray] | None = None
    for index, frame in enumerate(iter_frames(video, fps=choose_output_fps(info), info=info)):
        reading = meter.read(frame)
        if reading is None:
            continue
        score = {"closed": -reading.opening, "smile": reading.width, "open": reading.opening}[rule]
        if best is None or score > best[0]:
            best = (score, index, frame)
    if best is None:
        raise NoFaceError(f"The mouth meter found no face in {video.name}.")
    return best[1], best[2]


def _build_idle(photo: Path, inputs: Path) -> Path:
    path = inputs / "idle.mp4"
    if path.is_file():
        return path
    still = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    height, width = still.shape[:2]
    frames = []
    for index in range(round(IDLE_S * FPS)):
        t = index / FPS
        turn = cv2.getRotationMatrix2D(
            (width / 2, height / 2), 0.5 * np.sin(2 * np.pi * 0.2 * t), 1
        )
        turn[:, 2] += (2.0 * np.sin(2 * np.pi * 0.3 * t), 1.5 * np.sin(2 * np.pi * 0.45 * t))
        frames.append(cv2.warpAffine(still, turn, (width, height), borderMode=cv2.BORDER_REFLECT))
    return write_clip(path, frames)


def _build_face_leaves(inputs: Path) -> Path:
    """As tests/hostile/conftest.py's face_leaves_clip builds it."""
    path = inputs / "face_leaves.mp4"
    if path.is_file():
        return path
    faces = template_frames(12, 256)
    rest = [faceless_frame(256, 256, i) for i in range(FPS - 12)]
    return write_clip(path, faces + rest)


def _build_short_audio(english: Path, inputs: Path) -> Path:
    path = inputs / f"speech_{SHORT_AUDIO_S:g}s.wav"
    if path.is_file():
        return path
    audio = load_audio(english)
    window = round(SHORT_AUDIO_S * audio.sample_rate_hz)
    head = audio.samples_f32[: 3 * audio.sample_rate_hz].astype(np.float64)
    power = np.convolve(head**2, np.ones(window), mode="valid")
    start = int(np.argmax(power))
    return write_wav(path, audio.samples_f32[start : start + window], audio.sample_rate_hz)
