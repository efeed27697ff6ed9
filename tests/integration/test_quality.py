"""Quality figures: the signal maths on synthetic data, then `evaluate` on real talking clips.

The sync, margin and amplitude arithmetic has its own tests in tests/unit/test_sync_figures.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from talkingface.contact_sheet import (
    LABEL_PX,
    MouthMoment,
    mouth_moment_indices,
    sheet_size_px,
    write_contact_sheet,
    write_mouth_moments_sheet,
)
from talkingface.errors import InvalidMediaError
from talkingface.face import mesh
from talkingface.face.track import FaceTracker
from talkingface.fidelity import PSNR_CAP_DB, masked_psnr, masked_ssim, outside_mouth_mask
from talkingface.media.decode import iter_frames
from talkingface.quality import evaluate, mouth_jitter
from talkingface.sync_signal import lagged_correlation, speech_envelope
from talkingface.vocabulary import AudioClip

OLDER_WOMAN = "video_en_female_older_512x512_talking.mp4"
SUIT_MAN = "video_en_male_asian_suit_700x700_talking.mp4"
RADIO_AUDIO = "audio_en_male_radio_8s_16k_stereo.wav"


def _smooth_noise(length: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.convolve(rng.normal(size=length + 4), np.ones(5) / 5, mode="valid")


# --- lagged_correlation ------------------------------------------------------------------


def test_lagged_correlation_finds_mouth_after_sound_as_positive_lag() -> None:
    sound = _smooth_noise(200)
    mouth = np.concatenate([np.full(3, sound[0]), sound[:-3]])  # mouth[t] = sound[t - 3]

    peak, lag, at_zero = lagged_correlation(mouth, sound)

    assert lag == 3
    assert peak > 0.99
    assert at_zero < peak - 0.1


def test_lagged_correlation_finds_mouth_before_sound_as_negative_lag() -> None:
    sound = _smooth_noise(200, seed=1)
    mouth = np.concatenate([sound[2:], np.full(2, sound[-1])])  # mouth[t] = sound[t + 2]

    peak, lag, _ = lagged_correlation(mouth, sound)

    assert (lag, round(peak, 2)) == (-2, 1.0)


def test_lagged_correlation_skips_frames_without_a_face() -> None:
    sound = _smooth_noise(150, seed=2)
    mouth = sound.copy()
    mouth[10:30] = np.nan

    peak, lag, at_zero = lagged_correlation(mouth, sound)

    assert lag == 0
    assert peak == pytest.approx(1.0)
    assert at_zero == pytest.approx(1.0)


def test_lagged_correlation_of_a_still_mouth_is_undefined() -> None:
    peak, lag, at_zero = lagged_correlation(np.full(100, 0.1), _smooth_noise(100))

    assert math.isnan(peak) and math.isnan(at_zero) and lag == 0


# --- masked PSNR / SSIM ------------------------------------------------------------------


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), (7, 7), 0)
    return np.asarray(base)


def _with_noise(image: np.ndarray, columns: slice) -> np.ndarray:
    noisy = image.astype(np.int16)
    rng = np.random.default_rng(9)
    noisy[:, columns] += rng.integers(-40, 41, noisy[:, columns].shape, dtype=np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _left_mask(image: np.ndarray, width: int = 40) -> np.ndarray:
    mask = np.zeros(image.shape[:2], bool)
    mask[:, :width] = True
    return mask


def test_masked_psnr_of_identical_images_is_capped() -> None:
    image = _image()

    assert masked_psnr(image, image.copy(), _left_mask(image)) == PSNR_CAP_DB


def test_masked_psnr_drops_only_for_noise_inside_the_mask() -> None:
    image = _image()
    mask = _left_mask(image)

    outside = masked_psnr(image, _with_noise(image, slice(48, None)), mask)
    inside = masked_psnr(image, _with_noise(image, slice(0, 40)), mask)

    assert outside == PSNR_CAP_DB
    assert inside < 30.0


def test_masked_ssim_drops_only_for_noise_inside_the_mask() -> None:
    image = _image(3)
    mask = _left_mask(image)

    assert masked_ssim(image, image.copy(), mask) == pytest.approx(1.0)
    assert masked_ssim(image, _with_noise(image, slice(48, None)), mask) == pytest.approx(1.0)
    assert masked_ssim(image, _with_noise(image, slice(0, 40)), mask) < 0.8


def test_mouth_jitter_grows_with_frame_to_frame_shake_not_with_steady_motion() -> None:
    frames = 50
    eye_px = np.full(frames, 100.0)
    steady = np.stack([np.linspace(100, 150, frames), np.full(frames, 200.0)], axis=1)
    shaky = steady + np.stack([np.zeros(frames), 3.0 * (-1.0) ** np.arange(frames)], axis=1)
    shaky[20] = np.nan  # a frame without a face

    still = mouth_jitter(steady, eye_px)
    shaking = mouth_jitter(shaky, eye_px)

    assert still is not None and still < 1e-9
    assert shaking == pytest.approx(0.12, rel=0.01)  # |+3 - 2(-3) + 3| / 100 px


# --- speech envelope ---------------------------------------------------------------------


def _speech_like(rate_hz: int, duration_s: float, speech_s: list[tuple[float, float]]) -> AudioClip:
    """A 150 Hz buzz with syllable-rate loudness inside `speech_s`, faint noise elsewhere."""
    rng = np.random.default_rng(4)
    t = np.arange(round(duration_s * rate_hz)) / rate_hz
    samples = 0.0003 * rng.normal(size=t.shape)  # about -70 dBFS room noise
    for start_s, end_s in speech_s:
        inside = (t >= start_s) & (t < end_s)
        syllables = 0.6 + 0.4 * np.sin(2 * np.pi * 4.0 * t[inside]) ** 2
        samples[inside] += 0.3 * syllables * np.sign(np.sin(2 * np.pi * 150.0 * t[inside]))
    return AudioClip(samples.astype(np.float32), rate_hz)


def test_speech_envelope_marks_speech_and_pauses_of_200_ms_or_more() -> None:
    # Given speech 0.2-0.60 s and 0.68-1.4 s (an 80 ms gap), silence 1.4-2.0 s, speech 2.0-2.6 s
    audio = _speech_like(16000, 3.0, [(0.2, 0.6), (0.68, 1.4), (2.0, 2.6)])

    envelope, speech = speech_envelope(audio, fps=25.0, frame_count=80)  # 3.2 s: runs past audio

    assert envelope.shape == speech.shape == (80,)
    assert speech[6:35].all()  # 0.24-1.4 s, across the short gap
    assert speech[51:64].all()
    assert not speech[:4].any() and not speech[36:49].any() and not speech[66:].any()
    assert min(envelope[6:14].min(), envelope[18:35].min()) > 0.6
    assert envelope[15:17].max() < 0.6  # the gap dips the envelope, not the flag
    assert envelope[38:48].max() < 0.15
    assert not envelope[78:].any()  # the audio has ended (3.0 s) and the smoothing too


def test_speech_envelope_of_silence_is_all_silent() -> None:
    audio = AudioClip(np.zeros(16000, np.float32), 16000)

    envelope, speech = speech_envelope(audio, fps=25.0, frame_count=25)

    assert not speech.any()
    assert not envelope.any()


# --- contact sheet -----------------------------------------------------------------------


def test_contact_sheet_is_a_png_grid_of_the_expected_size(tmp_path: Path) -> None:
    frames = [_image(i) for i in range(4)] + [np.zeros((200, 50, 3), np.uint8)]

    path = write_contact_sheet(frames, tmp_path / "sheet.png", columns=3, cell_px=100)

    sheet = cv2.imread(str(path))
    assert sheet.shape[:2][::-1] == sheet_size_px(5, columns=3, cell_px=100) == (300, 248)


def test_mouth_moments_are_the_most_closed_the_median_and_the_most_open_frame() -> None:
    opening = np.array([0.05, np.nan, 0.01, 0.09, 0.03, np.nan, 0.07])

    assert mouth_moment_indices(opening) == [("most closed", 2), ("middle", 0), ("most open", 3)]
    assert mouth_moment_indices(np.full(4, np.nan)) == []


@pytest.mark.slow
def test_mouth_moments_sheet_shows_template_and_output_mouths_pixel_for_pixel(
    shared_media: Path, tmp_path: Path
) -> None:
    # Given a real frame as the template and a copy with a patch over the mouth as the output
    template = next(iter_frames(shared_media / OLDER_WOMAN, fps=25.0, max_frames=1))
    output = template.copy()
    output[300:330, 230:290] = (200, 30, 30)
    moments = [MouthMoment("most open", 7, 0.08, output, template)]

    path = write_mouth_moments_sheet(moments, tmp_path / "mouths.png")

    # Then the sheet is one row of two cells, and the output cell holds the red patch as
    # whole blocks of the original pixels (enlarged by a whole factor, never resampled)
    sheet = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    cell = sheet.shape[1] // 2
    assert sheet.shape[0] == cell + LABEL_PX
    left, right = sheet[:cell, :cell], sheet[:cell, cell:]
    red = np.all(right == (200, 30, 30), axis=-1)
    assert red.sum() > 0 and not np.all(left == (200, 30, 30), axis=-1).any()
    colours = {tuple(c) for c in right.reshape(-1, 3)[:5000]}
    assert colours <= {tuple(c) for c in output.reshape(-1, 3)} | {(32, 32, 32)}


# --- evaluate on real clips --------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_real_speaker_against_own_audio_has_clearly_positive_sync(
    shared_media: Path, tmp_path: Path
) -> None:
    sheet_path = tmp_path / "sheet.png"

    report = evaluate(shared_media / OLDER_WOMAN, contact_sheet_path=sheet_path)

    assert report.frame_count == 125 and report.fps == pytest.approx(25.0)
    assert report.faces_found == report.tracker_faces_found == report.frame_count
    assert report.sync_correlation is not None and report.sync_correlation > 0.3
    assert report.sync_lag_frames is not None and abs(report.sync_lag_frames) <= 3
    assert report.sync_margin is not None and report.sync_margin > 0.2  # well above a foil
    assert report.open_speech_mean is not None
    assert report.outside_mouth_psnr_db is None  # no template given
    assert report.amplitude_p50_ratio is None and report.own_speech_fraction is None
    assert report.mouth_jitter is not None and report.mouth_jitter < 0.05
    assert json.loads(json.dumps(report.to_dict(), allow_nan=False))["faces_found"] == 125
    sheet = cv2.imread(str(sheet_path))
    assert sheet.shape[:2][::-1] == sheet_size_px(24)  # 12 frames + their 12 mouth close-ups


@pytest.mark.slow
def test_evaluate_with_someone_elses_speech_scores_lower_sync(shared_media: Path) -> None:
    own = evaluate(shared_media / OLDER_WOMAN)
    other = evaluate(shared_media / OLDER_WOMAN, audio_path=shared_media / RADIO_AUDIO)

    assert own.sync_correlation is not None and other.sync_correlation is not None
    assert other.sync_correlation < own.sync_correlation - 0.2
    assert other.sync_margin is not None and other.sync_margin < 0.1


@pytest.mark.slow
def test_evaluate_second_speaker_with_variable_frame_rate(shared_media: Path) -> None:
    report = evaluate(shared_media / SUIT_MAN)

    assert report.faces_found >= 0.9 * report.frame_count
    assert report.sync_correlation is not None and report.sync_correlation > 0.2


@pytest.mark.slow
def test_evaluate_against_itself_as_template_is_identical_outside_the_mouth_and_as_wide(
    shared_media: Path,
) -> None:
    # Given the first 40 frames of a talking clip, measured against the whole clip
    video = shared_media / OLDER_WOMAN

    report = evaluate(video, template_path=video, max_frames=40)

    # Then nothing changed outside the mouth, and the mouth opens as wide as the person's
    # own (over their 125 frames, 85 of them measured after the output pass)
    assert report.frame_count == 40
    assert report.outside_mouth_psnr_db == PSNR_CAP_DB
    assert report.outside_mouth_ssim == pytest.approx(1.0)
    assert report.own_speech_fraction is not None and report.own_speech_fraction > 0.5
    assert report.amplitude_p50_ratio is not None and report.amplitude_p90_ratio is not None
    assert 0.8 <= report.amplitude_p50_ratio <= 1.25
    assert 0.8 <= report.amplitude_p90_ratio <= 1.25


@pytest.mark.slow
def test_evaluate_against_a_photo_template_has_no_amplitude_figures(
    shared_media: Path, tmp_path: Path
) -> None:
    video = shared_media / OLDER_WOMAN
    photo = tmp_path / "photo.png"
    first = next(iter_frames(video, fps=25.0, max_frames=1))
    cv2.imwrite(str(photo), cv2.cvtColor(first, cv2.COLOR_RGB2BGR))

    report = evaluate(video, template_path=photo, max_frames=30)

    assert report.own_speech_fraction is None  # a photo has no speech of its own
    assert report.amplitude_p50_ratio is None and report.amplitude_p90_ratio is None
    assert report.open_speech_p50 is not None  # the output's own figure is still there
    assert report.outside_mouth_psnr_db is not None


@pytest.mark.slow
def test_evaluate_a_video_without_sound_and_no_audio_given_has_no_sync_figures(
    shared_media: Path,
) -> None:
    report = evaluate(
        shared_media / "video_male_asian_glasses_720x1280_noaudio_talking.mp4", max_frames=10
    )

    assert report.frame_count == 10 and report.faces_found == 10
    assert report.sync_correlation is None and report.open_speech_mean is None
    assert report.sync_margin is None and report.open_speech_silence_ratio is None
    assert report.mouth_jitter is not None


@pytest.mark.slow
def test_evaluate_against_a_template_of_another_size_is_refused(shared_media: Path) -> None:
    with pytest.raises(InvalidMediaError, match="template"):
        evaluate(shared_media / OLDER_WOMAN, template_path=shared_media / SUIT_MAN, max_frames=3)


def _track(frames: list[np.ndarray]) -> list[np.ndarray]:
    tracker = FaceTracker(fps=25.0)
    observations = [tracker.process(frame) for frame in frames]
    assert all(observation is not None for observation in observations)
    return [observation.landmarks_f32 for observation in observations if observation is not None]


def _write_h264(path: Path, frames: list[np.ndarray]) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "12"})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.mark.slow
def test_outside_mouth_mask_leaves_out_lips_and_chin_and_keeps_eyes_and_background(
    shared_media: Path,
) -> None:
    frame = next(iter_frames(shared_media / OLDER_WOMAN, fps=25.0, max_frames=1))
    (landmarks,) = _track([frame])

    mask = outside_mouth_mask(landmarks, frame.shape[:2])

    def compared(index: int) -> bool:
        x, y = np.round(landmarks[index]).astype(int)
        return bool(mask[y, x])

    assert not any(compared(i) for i in (*mesh.LIPS_OUTER, mesh.CHIN, *mesh.LOWER_FACE))
    assert compared(mesh.EYE_OUTER_LEFT) and compared(mesh.EYE_OUTER_RIGHT)
    assert mask[:20].all() and mask[:, :20].all() and mask[:, -20:].all()
    assert 0.1 < 1.0 - mask.mean() < 0.4  # the lower face of a close-up, not the frame


@pytest.mark.slow
def test_outside_mouth_psnr_ignores_mouth_edits_and_sees_background_edits(
    shared_media: Path, tmp_path: Path
) -> None:
    # Given 20 frames of a real clip re-encoded twice: once with the mouth painted over
    # (what a lip-sync engine changes), once with a patch painted on the background
    template = shared_media / OLDER_WOMAN
    frames = list(iter_frames(template, fps=25.0, max_frames=20))
    mouth_edit, background_edit = [], []
    for frame, landmarks in zip(frames, _track(frames), strict=True):
        centre = np.round(landmarks[list(mesh.LIPS_OUTER)].mean(axis=0)).astype(int)
        mouth_edit.append(
            cv2.circle(frame.copy(), (int(centre[0]), int(centre[1])), 30, (90, 20, 20), -1)
        )
        background_edit.append(cv2.rectangle(frame.copy(), (8, 8), (72, 72), (0, 255, 0), -1))

    # When both are evaluated against the original as template
    mouth = evaluate(_write_h264(tmp_path / "mouth.mp4", mouth_edit), template_path=template)
    background = evaluate(_write_h264(tmp_path / "bg.mp4", background_edit), template_path=template)

    # Then only the background edit costs PSNR/SSIM outside the mouth
    assert mouth.outside_mouth_psnr_db is not None and mouth.outside_mouth_psnr_db > 35.0
    assert background.outside_mouth_psnr_db is not None
    assert background.outside_mouth_psnr_db < mouth.outside_mouth_psnr_db - 6.0
    assert mouth.outside_mouth_ssim is not None and background.outside_mouth_ssim is not None
    assert background.outside_mouth_ssim < mouth.outside_mouth_ssim
