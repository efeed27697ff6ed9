"""Stage s3: speech audio -> per-output-frame mouth drive (Articulation) for the renderer.

Everything is read from a 10 ms mel spectrum (audio/spectrum.py) and is language-independent:
levels are relative to the clip's own speech level, so a quiet (-36 dBFS) and a clipping
recording drive the mouth alike. Output frame k covers [k/fps, (k+1)/fps) of the audio shifted
earlier by `lookahead_s`, so the mouth opens slightly before the sound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage

from talkingface.audio.spectrum import POWER_FLOOR, MelSpectrum, mel_spectrum
from talkingface.errors import InvalidMediaError, Stage
from talkingface.vocabulary import Articulation, AudioClip

logger = logging.getLogger(__name__)

MIN_SAMPLE_RATE_HZ = 16000
CEPSTRAL_COUNT = 13  # spectral_f32 = normalised level + c1..c13
SPECTRAL_DIM = CEPSTRAL_COUNT + 1
_GATE_DB = -70.0  # nothing quieter than this is speech, however quiet the clip
_VAD_RANGE_DB = 35.0  # speech is within this of the clip's speech level...
_VAD_NOISE_MARGIN_DB = 10.0  # ...and this far above its noise floor (capped, see _speech_levels)
_LOUDNESS_RANGE_DB = 30.0  # loudness 0 at speech level - 30 dB
_MAX_GAP_S = 0.15  # shorter silences inside speech (stop closures) stay speech
_MIN_SPEECH_S = 0.05  # shorter sounds (clicks) are not speech
_SMOOTH_S = 0.02  # Gaussian sigma on the 100 Hz tracks
_NEUTRAL_CENTROID_HZ = 950.0  # envelope centroid of an /a/: neither rounded nor spread
_OPEN_GAIN = 1.2  # a loud open vowel reaches about 0.9


@dataclass(frozen=True, slots=True)
class _Levels:
    speech_db: float  # typical loud-speech frame level (95th percentile)
    threshold_db: float  # voice-activity threshold


@dataclass(frozen=True, slots=True)
class _Tracks:
    """The articulation on the 100 Hz analysis grid, before it is cut into output frames."""

    speech: np.ndarray  # (T,) 0/1
    loudness: np.ndarray  # (T,)
    open: np.ndarray  # (T,)
    width: np.ndarray  # (T,)
    closure: np.ndarray  # (T,)
    spectral: np.ndarray  # (T, D)


def articulation_track(
    audio: AudioClip, *, fps: float, frame_count: int | None = None, lookahead_s: float = 0.03
) -> Articulation:
    """Mouth drive for each output frame; frame_count defaults to round(duration * fps).

    Audio shorter than frame_count frames is padded with silence (speech False, all drives 0,
    spectral features 0 = the clip's mean); longer audio is cut.
    """
    if not fps > 0.0:
        raise ValueError(f"fps must be positive, got {fps}")
    samples = _checked_samples(audio)
    count = round(audio.duration_s * fps) if frame_count is None else frame_count
    if count < 0:
        raise ValueError(f"frame_count must be >= 0, got {count}")
    spectrum = mel_spectrum(samples, audio.sample_rate_hz)
    tracks = _analysis_tracks(spectrum)
    starts = np.arange(count) / fps + lookahead_s

    def per_frame(track: np.ndarray) -> np.ndarray:
        return _per_frame(track, starts, 1.0 / fps, spectrum.hop_s)

    logger.debug(
        "articulation computed",
        extra={"event": "articulation_computed", "frame_count": count, "fps": fps},
    )
    return Articulation(
        fps=float(fps),
        speech=per_frame(tracks.speech) >= 0.5,
        loudness_f32=_unit(per_frame(tracks.loudness)),
        open_f32=_unit(per_frame(tracks.open)),
        width_f32=np.clip(per_frame(tracks.width), -1.0, 1.0).astype(np.float32),
        closure_f32=_unit(per_frame(tracks.closure)),
        spectral_f32=per_frame(tracks.spectral).astype(np.float32),
    )


def _checked_samples(audio: AudioClip) -> np.ndarray:
    samples = np.asarray(audio.samples_f32, dtype=np.float32)
    if samples.ndim != 1:
        raise InvalidMediaError(
            f"Audio for feature extraction must be mono (1-D), got shape {samples.shape}; "
            "load it with talkingface.media.audio.load_audio.",
            stage=Stage.FEATURES,
        )
    if audio.sample_rate_hz < MIN_SAMPLE_RATE_HZ:
        raise InvalidMediaError(
            f"Audio at {audio.sample_rate_hz} Hz is below the {MIN_SAMPLE_RATE_HZ} Hz the "
            "features need; resample it to 16 kHz (load_audio does).",
            stage=Stage.FEATURES,
        )
    if samples.shape[0] and not np.isfinite(samples).all():
        raise InvalidMediaError(
            "Audio contains NaN or infinite samples; re-export the audio file.",
            stage=Stage.FEATURES,
        )
    return samples


def _analysis_tracks(spectrum: MelSpectrum) -> _Tracks:
    """Every feature on the 100 Hz analysis grid."""
    hop_s = spectrum.hop_s
    energy_db = spectrum.energy_db_f32.astype(np.float64)
    levels = _speech_levels(energy_db)
    speech = _voice_activity(energy_db, levels, hop_s)
    gate = ndimage.gaussian_filter1d(speech.astype(np.float64), 1.5)
    loudness_raw = (energy_db - (levels.speech_db - _LOUDNESS_RANGE_DB)) / (
        _LOUDNESS_RANGE_DB + 3.0
    )
    loudness_raw = np.clip(loudness_raw, 0.0, 1.0) * gate
    closure = _smooth(_closure(spectrum, energy_db, levels, speech), hop_s)
    loudness = _smooth(loudness_raw, hop_s)
    open_raw = loudness_raw * _openness(spectrum) * _vowel_likeness(spectrum)
    open_ = _smooth(_OPEN_GAIN * _deepen_dips(open_raw, hop_s) * (1.0 - closure), hop_s)
    width = _smooth(
        _spreading(spectrum, energy_db, levels) * np.minimum(1.0, 3.0 * loudness_raw), hop_s
    )
    return _Tracks(
        speech=speech.astype(np.float64),
        loudness=loudness,
        open=open_,
        width=width,
        closure=closure,
        spectral=_cepstral_features(spectrum, energy_db, levels, speech),
    )


def _speech_levels(energy_db: np.ndarray) -> _Levels:
    """The clip's speech level and voice-activity threshold from its level distribution.

    The threshold is 35 dB below the speech level, raised to 10 dB above the noise floor where
    the floor is high, but never above speech level - 25 dB: in a clip that is speech from end
    to end (no pauses) the "floor" is quiet speech, not noise.
    """
    audible = energy_db[energy_db > _GATE_DB]
    if audible.shape[0] == 0:
        return _Levels(speech_db=_GATE_DB, threshold_db=np.inf)
    speech_db = float(np.percentile(audible, 95))
    floor_db = float(np.percentile(energy_db, 10))
    raised = min(floor_db + _VAD_NOISE_MARGIN_DB, speech_db - 25.0)
    threshold_db = max(speech_db - _VAD_RANGE_DB, raised, _GATE_DB)
    return _Levels(speech_db=speech_db, threshold_db=threshold_db)


def _voice_activity(energy_db: np.ndarray, levels: _Levels, hop_s: float) -> np.ndarray:
    """(T,) bool: hysteresis on the level, short gaps closed, short blips removed."""
    strong = energy_db > levels.threshold_db
    weak = energy_db > levels.threshold_db - 6.0
    labels, _ = ndimage.label(weak)
    keep = np.unique(labels[strong & (labels > 0)])
    speech = np.isin(labels, keep) & (labels > 0)
    gap = max(1, round(_MAX_GAP_S / hop_s))
    padded = np.pad(speech, gap)
    closed = ndimage.binary_closing(padded, structure=np.ones(gap))[gap:-gap]
    blip = max(1, round(_MIN_SPEECH_S / hop_s))
    return np.asarray(ndimage.binary_opening(closed, structure=np.ones(blip)), dtype=bool)


def _smooth(track: np.ndarray, hop_s: float) -> np.ndarray:
    return np.asarray(ndimage.gaussian_filter1d(track, _SMOOTH_S / hop_s, mode="nearest"))


def _band_db(spectrum: MelSpectrum, low_hz: float, high_hz: float) -> np.ndarray:
    return 10.0 * np.log10(spectrum.band_power(low_hz, high_hz).astype(np.float64) + POWER_FLOOR)


def _openness(spectrum: MelSpectrum) -> np.ndarray:
    """(T,) 0.5..1 from the first-formant region's power centroid: /a/ high, /i/ /u/ low."""
    centres = spectrum.centres_hz.astype(np.float64)
    chosen = (centres >= 250.0) & (centres < 1200.0)
    power = spectrum.power_f32[:, chosen].astype(np.float64) + POWER_FLOOR
    f1_hz = (power @ centres[chosen]) / power.sum(axis=1)
    return 0.5 + 0.5 * np.clip((f1_hz - 350.0) / 500.0, 0.0, 1.0)


def _vowel_likeness(spectrum: MelSpectrum) -> np.ndarray:
    """(T,) 0.35..1: low where energy sits above 3 kHz (fricatives: s, f, sh), 1 for vowels."""
    balance_db = _band_db(spectrum, 80.0, 1500.0) - _band_db(spectrum, 3000.0, 7600.0)
    return 0.35 + 0.65 * np.clip((balance_db + 5.0) / 15.0, 0.0, 1.0)


def _spreading(spectrum: MelSpectrum, energy_db: np.ndarray, levels: _Levels) -> np.ndarray:
    """(T,) -1 (rounded: energy low, o/u) .. +1 (spread: high F2, i/e), about 0 for /a/.

    The mel-scale centroid of the pre-emphasised envelope (bands within 30 dB of the frame's
    peak, 200–4000 Hz) is an F2 proxy that does not depend on the level. Voices differ in
    brightness, so it is compared with a reference pulled 70 % of the way towards the clip's
    own median centroid over its loud (vowel) frames.
    """
    centres = spectrum.centres_hz.astype(np.float64)
    chosen = (centres >= 200.0) & (centres < 4000.0)
    emphasised = spectrum.power_f32[:, chosen] * (centres[chosen] / 1000.0) ** 2
    band_db = 10.0 * np.log10(emphasised + POWER_FLOOR)
    weights = np.clip(band_db - (band_db.max(axis=1, keepdims=True) - 30.0), 0.0, None)
    mel = 2595.0 * np.log10(1.0 + centres[chosen] / 700.0)
    centroid_mel = (weights @ mel) / np.maximum(weights.sum(axis=1), 1e-9)
    centroid_hz = 700.0 * (10.0 ** (centroid_mel / 2595.0) - 1.0)
    loud = energy_db > levels.speech_db - 10.0
    reference_hz = _NEUTRAL_CENTROID_HZ
    if int(loud.sum()) >= 10:
        reference_hz += 0.7 * (float(np.median(centroid_hz[loud])) - _NEUTRAL_CENTROID_HZ)
    return np.asarray(np.tanh((centroid_hz - reference_hz) / 250.0))


def _closure(
    spectrum: MelSpectrum, energy_db: np.ndarray, levels: _Levels, speech: np.ndarray
) -> np.ndarray:
    """(T,) 0..1 lips pressed: nasal murmur (m/n), or quiet just before an abrupt onset (p/b)."""
    return np.maximum(
        _nasal_murmur(spectrum, energy_db, levels, speech),
        _pre_burst(spectrum, energy_db, levels, speech),
    )


def _nasal_murmur(
    spectrum: MelSpectrum, energy_db: np.ndarray, levels: _Levels, speech: np.ndarray
) -> np.ndarray:
    """(T,) 0..1: voiced, below vowel level, energy only under ~450 Hz (m, n, ng).

    "Only low" is judged against the clip's own loud (vowel) frames, because voices and
    microphones differ in how much low-frequency energy their vowels carry.
    """
    nasal_db = _band_db(spectrum, 80.0, 450.0) - _band_db(spectrum, 500.0, 3500.0)
    voiced = energy_db > levels.threshold_db
    loud = energy_db > levels.speech_db - 10.0
    if int(loud.sum()) < 10:
        return np.zeros_like(energy_db)
    threshold_db = max(12.0, float(np.median(nasal_db[loud])) + 14.0)
    below_vowels = np.clip((levels.speech_db - 3.0 - energy_db) / 6.0, 0.0, 1.0)
    return np.clip((nasal_db - threshold_db) / 6.0, 0.0, 1.0) * below_vowels * voiced


def _pre_burst(
    spectrum: MelSpectrum, energy_db: np.ndarray, levels: _Levels, speech: np.ndarray
) -> np.ndarray:
    """(T,) 0..1: quiet frames up to 60 ms before an abrupt (12–24 dB in 20 ms) onset whose
    energy is not mostly above 3 kHz (a lip release such as p/b, not an /s/ or a /t/)."""
    ahead = np.concatenate([energy_db[2:], np.repeat(energy_db[-1:], 2)])
    balance_db = _band_db(spectrum, 80.0, 1500.0) - _band_db(spectrum, 3000.0, 7600.0)
    low_release = np.clip(np.concatenate([balance_db[2:], balance_db[-1:].repeat(2)]) / 10.0, 0, 1)
    rise_db = np.clip(ahead - energy_db, 0.0, None)
    onset = np.clip((rise_db - 12.0) / 12.0, 0.0, 1.0) * (ahead > levels.threshold_db) * low_release
    reach = round(0.06 / spectrum.hop_s)
    padded = np.concatenate([onset, np.zeros(reach)])
    upcoming = np.lib.stride_tricks.sliding_window_view(padded, reach + 1).max(axis=1)
    quiet = np.clip((levels.speech_db - 20.0 - energy_db) / 10.0, 0.0, 1.0)
    return np.asarray(upcoming * quiet * (speech | (ahead > levels.threshold_db)))


def _deepen_dips(open_raw: np.ndarray, hop_s: float) -> np.ndarray:
    """Scale each frame by its ratio to the local peak (±120 ms) so syllables separate."""
    size = max(3, round(0.24 / hop_s) | 1)
    peak = ndimage.maximum_filter1d(open_raw, size=size, mode="nearest")
    ratio = np.divide(open_raw, peak, out=np.zeros_like(open_raw), where=peak > 1e-6)
    return open_raw * (0.4 + 0.6 * ratio)


def _cepstral_features(
    spectrum: MelSpectrum, energy_db: np.ndarray, levels: _Levels, speech: np.ndarray
) -> np.ndarray:
    """(T, D) normalised level + mel cepstrum c1..c13, mean/variance normalised over speech.

    Normalising per clip removes the channel and speaker so two recordings are comparable.
    """
    log_mel = np.log(spectrum.power_f32.astype(np.float64) + POWER_FLOOR)
    cepstrum = fft.dct(log_mel, type=2, norm="ortho", axis=1)[:, 1 : CEPSTRAL_COUNT + 1]
    level = np.clip(energy_db, levels.speech_db - 60.0, None)[:, None] / 10.0
    features = np.hstack([level, cepstrum])
    reference = features[speech] if int(speech.sum()) >= 10 else features
    mean = reference.mean(axis=0)
    std = reference.std(axis=0) + 1e-6
    return np.asarray((features - mean) / std)


def _per_frame(track: np.ndarray, starts_s: np.ndarray, span_s: float, hop_s: float) -> np.ndarray:
    """Average the analysis frames centred in each output frame's span; silence past the end.

    A span shorter than the hop takes the nearest analysis frame.
    """
    count = track.shape[0]
    first = np.clip(np.ceil(starts_s / hop_s - 1e-9).astype(np.int64), 0, count)
    last = np.clip(np.ceil((starts_s + span_s) / hop_s - 1e-9).astype(np.int64), 0, count)
    nearest = np.clip(np.round((starts_s + span_s / 2) / hop_s).astype(np.int64), 0, count)
    empty = last <= first
    first = np.where(empty, np.minimum(nearest, count), first)
    last = np.where(empty, np.minimum(nearest + 1, count), last)
    silence = np.zeros((1, *track.shape[1:]))
    cumulative = np.concatenate([silence, np.cumsum(track, axis=0)])
    sums = cumulative[last] - cumulative[first]
    widths = (last - first).reshape(-1, *([1] * (track.ndim - 1)))
    return np.asarray(np.divide(sums, np.maximum(widths, 1)) * (widths > 0))


def _unit(values: np.ndarray) -> np.ndarray:
    return np.clip(values, 0.0, 1.0).astype(np.float32)
