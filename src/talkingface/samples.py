"""Sample inputs built in code (speech-like audio, photo, template clip) for demo and tests."""

from __future__ import annotations

import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import signal

from talkingface.errors import Stage, translate_errors

# Vowel formants (F1, F2, F3) in Hz: adult averages after Peterson & Barney (1952).
VOWEL_FORMANTS_HZ: dict[str, tuple[float, float, float]] = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}
_FORMANT_BANDWIDTHS_HZ = (80.0, 100.0, 140.0)
# Intrinsic vowel intensity (open vowels are louder), dB relative to /a/.
_VOWEL_INTENSITY_DB = {"a": 0.0, "e": -2.0, "i": -4.0, "o": -1.0, "u": -4.0}
_VOWEL_RMS = 0.1
# Consonant noise bands (low, high) in Hz for bursts and fricatives.
_NOISE_BANDS_HZ: dict[str, tuple[float, float]] = {
    "p": (400.0, 1800.0),
    "b": (400.0, 1800.0),
    "t": (3000.0, 6500.0),
    "k": (1500.0, 3000.0),
    "s": (4000.0, 7500.0),
    "f": (1500.0, 7000.0),
    "h": (500.0, 4000.0),
}
_STOPS = frozenset("pbtk")
_FRICATIVES = frozenset("sfh")
_NASALS = frozenset("mn")
_CONSONANTS = "pbtkmnsfh"

# Where the astronaut's face sits in skimage.data.astronaut() (x0, y0, x1, y1), checked by eye.
ASTRONAUT_FACE_BOX_PX = (170, 55, 280, 190)
_PEAK_LEVEL = 0.7  # synthetic speech peak, about -3 dBFS
_DITHER_LEVEL = 1e-4  # -80 dBFS noise floor so "silence" is not exactly zero
_TEMPLATE_DURATION_S = 3.0


@dataclass(frozen=True, slots=True)
class SpeechSample:
    """Synthetic speech and the ground truth it was built from."""

    samples_f32: np.ndarray  # (S,) mono float32 in [-1, 1]
    sample_rate_hz: int
    syllable_onsets_s: tuple[float, ...]  # start of each syllable (its consonant, else vowel)
    speech_intervals_s: tuple[tuple[float, float], ...]  # audible phrases (start, end)

    @property
    def duration_s(self) -> float:
        return float(self.samples_f32.shape[0]) / float(self.sample_rate_hz)


@dataclass(frozen=True, slots=True)
class DemoInputs:
    """Files written by make_demo_inputs."""

    audio_path: Path
    video_path: Path
    photo_path: Path
    speech: SpeechSample


@dataclass(frozen=True, slots=True)
class _Phrase:
    syllables: tuple[str, ...]  # e.g. ("ba", "mi", "su", "o")
    f0_start_hz: float
    f0_end_hz: float


def synth_speech(
    duration_s: float = 4.0, *, sample_rate_hz: int = 16000, seed: int = 0
) -> SpeechSample:
    """Speech-like audio: phrases of 4–8 CV syllables (~180 ms) separated by ≥ 300 ms pauses.

    Deterministic per seed. Starts and ends in silence; a clip too short for a full phrase
    gets a shorter one.
    """
    if duration_s < 1.0:
        raise ValueError(f"duration_s must be at least 1.0 s, got {duration_s}")
    rng = np.random.default_rng(seed)
    lead_s, tail_s = 0.4, 0.4
    budget_s = duration_s - lead_s - tail_s
    phrases: list[_Phrase] = []
    pauses_s: list[float] = []
    while True:
        pause_s = float(rng.uniform(0.35, 0.6)) if phrases else 0.0
        count = int(rng.integers(4, 9))
        fits = int((budget_s - pause_s) / 0.22)
        if fits < 1 or (phrases and fits < 4):
            break
        phrases.append(_random_phrase(rng, min(count, fits)))
        pauses_s.append(pause_s)
        budget_s -= pause_s + 0.22 * len(phrases[-1].syllables)
    return _render_phrases(phrases, pauses_s, lead_s, duration_s, sample_rate_hz, rng)


def synth_syllables(
    syllables: Sequence[str],
    *,
    f0_hz: float | None = None,
    syllable_s: float = 0.18,
    sample_rate_hz: int = 16000,
    seed: int = 0,
) -> SpeechSample:
    """One phrase of the given syllables ("ba", "mi", "u"…), 0.4 s of silence either side.

    A syllable is an optional consonant from "pbtkmnsfh" and a vowel from "aeiou". With f0_hz
    the pitch is flat, otherwise it falls gently from 170 Hz to 120 Hz.
    """
    for syllable in syllables:
        _split_syllable(syllable)
    rng = np.random.default_rng(seed)
    start_hz, end_hz = (f0_hz, f0_hz) if f0_hz is not None else (170.0, 120.0)
    phrase = _Phrase(tuple(syllables), start_hz, end_hz)
    duration_s = 0.8 + len(syllables) * (syllable_s + 0.03)
    return _render_phrases(
        [phrase], [0.0], 0.4, duration_s, sample_rate_hz, rng, syllable_s=syllable_s
    )


def _random_phrase(rng: np.random.Generator, count: int) -> _Phrase:
    syllables = []
    for _ in range(count):
        consonant = "" if rng.random() < 0.15 else str(rng.choice(list(_CONSONANTS)))
        syllables.append(consonant + str(rng.choice(list(VOWEL_FORMANTS_HZ))))
    start_hz = float(rng.uniform(150.0, 210.0))
    return _Phrase(tuple(syllables), start_hz, max(110.0, start_hz - rng.uniform(30.0, 60.0)))


def _split_syllable(syllable: str) -> tuple[str, str]:
    consonant, vowel = syllable[:-1], syllable[-1:]
    if vowel not in VOWEL_FORMANTS_HZ or consonant not in ("", *_CONSONANTS):
        raise ValueError(f"unknown syllable {syllable!r}: use [pbtkmnsfh] + one of aeiou")
    return consonant, vowel


def _render_phrases(
    phrases: Sequence[_Phrase],
    pauses_s: Sequence[float],
    lead_s: float,
    duration_s: float,
    sample_rate_hz: int,
    rng: np.random.Generator,
    *,
    syllable_s: float | None = None,
) -> SpeechSample:
    """Lay the phrases out in time, render each syllable and normalise the level."""
    rate = sample_rate_hz
    out = np.zeros(round(duration_s * rate), dtype=np.float64)
    onsets: list[float] = []
    intervals: list[tuple[float, float]] = []
    cursor_s = lead_s
    for phrase, pause_s in zip(phrases, pauses_s, strict=True):
        cursor_s += pause_s
        count = len(phrase.syllables)
        f0s = np.linspace(phrase.f0_start_hz, phrase.f0_end_hz, count)
        first_audible_s = None
        for index, syllable in enumerate(phrase.syllables):
            length_s = syllable_s if syllable_s is not None else float(rng.uniform(0.15, 0.21))
            accent = 1.0 + 0.08 * np.sin(np.pi * index / 1.7)
            f0_hz = float(np.clip(f0s[index] * accent, 110.0, 220.0))
            piece, silent_lead = _render_syllable(syllable, length_s, f0_hz, rate, rng)
            start = round(cursor_s * rate)
            out[start : start + piece.shape[0]] += piece[: out.shape[0] - start]
            onsets.append(cursor_s)
            if first_audible_s is None:
                first_audible_s = cursor_s + silent_lead / rate
            cursor_s += piece.shape[0] / rate
        intervals.append((float(first_audible_s or cursor_s), cursor_s))
    out *= _PEAK_LEVEL / max(float(np.max(np.abs(out))), 1e-9)
    out += rng.normal(0.0, _DITHER_LEVEL, out.shape[0])
    return SpeechSample(
        samples_f32=np.clip(out, -1.0, 1.0).astype(np.float32),
        sample_rate_hz=rate,
        syllable_onsets_s=tuple(onsets),
        speech_intervals_s=tuple(intervals),
    )


def _render_syllable(
    syllable: str, length_s: float, f0_hz: float, rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """A consonant part followed by a vowel; returns the samples and the silent lead length."""
    consonant, vowel = _split_syllable(syllable)
    total = round(length_s * rate)
    silent_lead = 0
    if consonant in _STOPS:
        silent_lead = round(0.045 * rate)
        burst = _noise_segment(consonant, round(0.015 * rate), rate, rng, level=0.5)
        lead = np.concatenate([np.zeros(silent_lead), burst])
    elif consonant in _FRICATIVES:
        lead = _noise_segment(consonant, round(0.07 * rate), rate, rng, level=0.3)
    elif consonant in _NASALS:
        lead = _nasal_murmur(round(0.06 * rate), f0_hz, rate)
    else:
        lead = np.zeros(0)
    vowel_len = max(total - lead.shape[0], round(0.06 * rate))
    voiced = _vowel(vowel, vowel_len, f0_hz, rate, rng)
    return np.concatenate([lead, voiced]), silent_lead


def _glottal_source(length: int, f0_hz: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Pulse train with slight jitter, glottal roll-off and lip radiation (about -6 dB/oct)."""
    t = np.arange(length) / rate
    vibrato = 1.0 + 0.01 * np.sin(2 * np.pi * 5.0 * t + rng.uniform(0, 2 * np.pi))
    phase = np.cumsum(f0_hz * vibrato / rate)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    b, a = signal.butter(2, min(0.45 * rate, 800.0), fs=rate)
    shaped = signal.lfilter(b, a, pulses)
    return np.asarray(np.diff(shaped, prepend=0.0), dtype=np.float64)


def _resonate(source: np.ndarray, formants_hz: Sequence[float], rate: int) -> np.ndarray:
    """Cascade of two-pole resonators with unit gain at 0 Hz (a Klatt-style vocal tract)."""
    out = source
    for freq_hz, bandwidth_hz in zip(formants_hz, _FORMANT_BANDWIDTHS_HZ, strict=False):
        radius = np.exp(-np.pi * bandwidth_hz / rate)
        a = [1.0, -2.0 * radius * np.cos(2.0 * np.pi * freq_hz / rate), radius * radius]
        out = signal.lfilter([sum(a)], a, out)
    return np.asarray(out, dtype=np.float64)


def _vowel(
    vowel: str, length: int, f0_hz: float, rate: int, rng: np.random.Generator
) -> np.ndarray:
    source = _glottal_source(length, f0_hz, rate, rng)
    source += rng.normal(0.0, 0.002, length)  # a little breath
    voiced = _resonate(source, VOWEL_FORMANTS_HZ[vowel], rate)
    level = _VOWEL_RMS * 10.0 ** (_VOWEL_INTENSITY_DB[vowel] / 20.0)
    return _at_rms(voiced, level) * _envelope(length, rate, rise_s=0.015, fall_s=0.035)


def _at_rms(samples: np.ndarray, rms: float) -> np.ndarray:
    return samples * (rms / max(float(np.sqrt(np.mean(samples * samples))), 1e-12))


def _nasal_murmur(length: int, f0_hz: float, rate: int) -> np.ndarray:
    """Low-frequency-only voicing (an /m/ or /n/): one resonance near 250 Hz, steep low-pass."""
    source = _glottal_source(length, f0_hz, rate, np.random.default_rng(0))
    murmur = signal.lfilter(*signal.butter(6, 350.0, fs=rate), _resonate(source, (250.0,), rate))
    level = _VOWEL_RMS * 10.0 ** (-8.0 / 20.0)
    return _at_rms(np.asarray(murmur, dtype=np.float64), level) * _envelope(
        length, rate, rise_s=0.01, fall_s=0.005
    )


def _noise_segment(
    consonant: str, length: int, rate: int, rng: np.random.Generator, *, level: float
) -> np.ndarray:
    low_hz, high_hz = _NOISE_BANDS_HZ[consonant]
    b, a = signal.butter(2, [low_hz, min(high_hz, 0.45 * rate)], btype="band", fs=rate)
    noise = signal.lfilter(b, a, rng.normal(0.0, 1.0, length))
    noise = _at_rms(np.asarray(noise, dtype=np.float64), level * _VOWEL_RMS)
    return noise * _envelope(length, rate, 0.005, 0.01)


def _envelope(length: int, rate: int, rise_s: float, fall_s: float) -> np.ndarray:
    env = np.ones(length)
    rise, fall = min(round(rise_s * rate), length // 2), min(round(fall_s * rate), length // 2)
    if rise:
        env[:rise] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, rise))
    if fall:
        env[length - fall :] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, fall))
    return env


def write_wav(path: str | Path, samples_f32: np.ndarray, sample_rate_hz: int) -> Path:
    """Write mono float samples in [-1, 1] as a 16-bit PCM WAV; returns the path."""
    target = Path(path)
    pcm = np.round(np.clip(samples_f32, -1.0, 1.0) * 32767.0).astype("<i2")
    with translate_errors(Stage.SETUP, f"writing {target}"), wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate_hz))
        out.writeframes(pcm.tobytes())
    return target


def astronaut_photo() -> np.ndarray:
    """A real portrait shipped inside scikit-image (512x512 RGB uint8)."""
    from skimage import data  # deferred: importing skimage.data is slow

    return np.ascontiguousarray(data.astronaut(), dtype=np.uint8)


def iter_template_frames_from_photo(
    photo_rgb: np.ndarray,
    *,
    frame_count: int,
    size_px: int = 512,
    seed: int = 0,
    fps: float = 25.0,
    face_box_px: tuple[int, int, int, int] = ASTRONAUT_FACE_BOX_PX,
) -> Iterator[np.ndarray]:
    """A short "template video" from one photo: a square crop around the face, gently moving.

    The crop is about 2.4 face widths wide (kept inside the photo where it fits). Each frame
    adds smooth head motion: ~1–2 px translation, ~0.5° rotation, ~0.5 % scale.
    """
    if frame_count < 0 or size_px < 16:
        raise ValueError(f"need frame_count >= 0 and size_px >= 16, got {frame_count}, {size_px}")
    height, width = photo_rgb.shape[:2]
    x0, y0, x1, y1 = face_box_px
    side = min(2.4 * max(x1 - x0, y1 - y0), float(width), float(height))
    left = float(np.clip((x0 + x1) / 2 - side / 2, 0.0, width - side))
    top = float(np.clip((y0 + y1) / 2 - side / 2, 0.0, height - side))
    zoom = size_px / side
    centre = (size_px / 2.0, size_px / 2.0)
    motion = _head_motion(frame_count, fps, np.random.default_rng(seed))
    for dx_px, dy_px, angle_deg, scale in motion:
        crop = np.array([[zoom, 0.0, -left * zoom], [0.0, zoom, -top * zoom], [0.0, 0.0, 1.0]])
        move = np.vstack([cv2.getRotationMatrix2D(centre, angle_deg, scale), [0.0, 0.0, 1.0]])
        move[0, 2] += dx_px
        move[1, 2] += dy_px
        matrix = (move @ crop)[:2]
        yield cv2.warpAffine(
            photo_rgb,
            matrix,
            (size_px, size_px),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT101,
        )


def _head_motion(frame_count: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """(N, 4) smooth dx_px, dy_px, angle_deg, scale: a few slow sinusoids per axis."""
    t = np.arange(frame_count) / fps
    amplitudes = (1.5, 1.0, 0.5, 0.005)
    columns = []
    for amplitude in amplitudes:
        freqs_hz = rng.uniform(0.15, 0.6, 3)
        phases = rng.uniform(0.0, 2 * np.pi, 3)
        wave_sum = np.sin(2 * np.pi * freqs_hz[:, None] * t[None, :] + phases[:, None]).sum(0)
        columns.append(amplitude * wave_sum / 1.7)
    motion = np.stack(columns, axis=1)
    motion[:, 3] += 1.0
    return motion


def make_demo_inputs(
    directory: str | Path, *, duration_s: float = 6.0, fps: float = 25.0, size_px: int = 512
) -> DemoInputs:
    """Write speech.wav, template.mp4 (3 s from the photo, for looping) and photo.png."""
    root = Path(directory)
    with translate_errors(Stage.SETUP, f"creating {root}"):
        root.mkdir(parents=True, exist_ok=True)
    speech = synth_speech(duration_s)
    audio_path = write_wav(root / "speech.wav", speech.samples_f32, speech.sample_rate_hz)
    photo = astronaut_photo()
    photo_path = root / "photo.png"
    with translate_errors(Stage.SETUP, f"writing {photo_path}"):
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"PNG encoding failed for {photo_path}")
        photo_path.write_bytes(encoded.tobytes())
    video_path = root / "template.mp4"
    frames = iter_template_frames_from_photo(
        photo, frame_count=round(_TEMPLATE_DURATION_S * fps), size_px=size_px, fps=fps
    )
    _write_video(video_path, frames, size_px, fps)
    return DemoInputs(audio_path, video_path, photo_path, speech)


def _write_video(path: Path, frames: Iterator[np.ndarray], size_px: int, fps: float) -> None:
    from talkingface.media.encode import VideoWriter

    with VideoWriter(path, width=size_px, height=size_px, fps=fps, audio_path=None) as writer:
        for frame in frames:
            writer.write(frame)
