"""The thresholds a QualityReport should meet, and each figure's pass/fail against them.

One definition for `evaluate`'s printout, `demo` and bench/quality_matrix.py. A check whose
figure could not be measured (no audio, no template, no speech of the person's own) has
`passed` None: it is shown, never counted as a pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from talkingface.quality import QualityReport

MIN_SYNC_CORRELATION = 0.6
MAX_SYNC_LAG_FRAMES = 1
MIN_SYNC_MARGIN = 0.2
MIN_SPEECH_SILENCE_RATIO = 1.5
AMPLITUDE_RATIO_RANGE = (0.8, 1.25)
MIN_OUTSIDE_MOUTH_PSNR_DB = 40.0
# Published SyncNet figures, for reading LSE-D / LSE-C: syncnet_python's README for its real
# example clip (data/example.avi), and Wav2Lip's output on LRS2 (the Wav2Lip paper, Table 1).
TYPICAL_LSE_D_REAL = 5.35
TYPICAL_LSE_C_REAL = 10.02
TYPICAL_LSE_D_WAV2LIP = 6.39
TYPICAL_LSE_C_WAV2LIP = 7.78


class CheckName(StrEnum):
    """The thresholded figures, in the order they are printed."""

    SYNC = "sync"
    MARGIN = "margin"
    SPEECH_SILENCE = "speech_silence"
    AMPLITUDE_P50 = "amplitude_p50"
    AMPLITUDE_P90 = "amplitude_p90"
    PSNR = "psnr"


@dataclass(frozen=True, slots=True)
class Check:
    """One figure against its threshold."""

    name: CheckName
    label: str  # what is measured, for people
    value: str  # the figure with its unit ("0.82 r at lag 0 frames"), "n/a" if unmeasured
    needs: str  # the threshold, for people ("≥ 0.60 r at |lag| ≤ 1 frame")
    passed: bool | None  # None: not measured


def check_report(report: QualityReport) -> tuple[Check, ...]:
    """Every thresholded figure of `report`, in CheckName order."""
    low, high = AMPLITUDE_RATIO_RANGE
    return (
        _sync_check(report),
        _at_least(
            CheckName.MARGIN,
            "margin over a foil",
            report.sync_margin,
            MIN_SYNC_MARGIN,
            unit="r",
            extra=_foil_note(report),
        ),
        _at_least(
            CheckName.SPEECH_SILENCE,
            "opening speech / silence",
            report.open_speech_silence_ratio,
            MIN_SPEECH_SILENCE_RATIO,
            unit="x",
            extra=_means_note(report),
        ),
        _within(
            CheckName.AMPLITUDE_P50,
            "amplitude p50 vs own",
            report.amplitude_p50_ratio,
            (low, high),
            _own_note(report, report.open_speech_p50, report.own_open_speech_p50),
        ),
        _within(
            CheckName.AMPLITUDE_P90,
            "amplitude p90 vs own",
            report.amplitude_p90_ratio,
            (low, high),
            _own_note(report, report.open_speech_p90, report.own_open_speech_p90),
        ),
        _at_least(
            CheckName.PSNR,
            "outside-mouth PSNR",
            report.outside_mouth_psnr_db,
            MIN_OUTSIDE_MOUTH_PSNR_DB,
            unit="dB",
            digits=1,
        ),
    )


def _sync_check(report: QualityReport) -> Check:
    needs = f"≥ {MIN_SYNC_CORRELATION:.2f} r at |lag| ≤ {MAX_SYNC_LAG_FRAMES} frame"
    correlation, lag = report.sync_correlation, report.sync_lag_frames
    if correlation is None or lag is None:
        return Check(CheckName.SYNC, "sync correlation", "n/a", needs, None)
    passed = correlation >= MIN_SYNC_CORRELATION and abs(lag) <= MAX_SYNC_LAG_FRAMES
    value = f"{correlation:.2f} r at lag {lag} frames"
    return Check(CheckName.SYNC, "sync correlation", value, needs, passed)


def _at_least(
    name: CheckName,
    label: str,
    value: float | None,
    minimum: float,
    *,
    unit: str,
    digits: int = 2,
    extra: str = "",
) -> Check:
    needs = f"≥ {minimum:.{digits}f} {unit}"
    if value is None:
        return Check(name, label, "n/a" + extra, needs, None)
    return Check(name, label, f"{value:.{digits}f} {unit}{extra}", needs, value >= minimum)


def _within(
    name: CheckName, label: str, value: float | None, bounds: tuple[float, float], extra: str
) -> Check:
    low, high = bounds
    needs = f"{low:.2f}–{high:.2f} x"
    if value is None:
        return Check(name, label, "n/a" + extra, needs, None)
    return Check(name, label, f"{value:.2f} x{extra}", needs, low <= value <= high)


def _foil_note(report: QualityReport) -> str:
    if report.foil_correlation is None:
        return ""
    return f" (foil {report.foil_correlation:.2f} r)"


def _means_note(report: QualityReport) -> str:
    speech, silence = report.open_speech_mean, report.open_silence_mean
    if speech is None or silence is None:
        return ""
    return f" ({speech:.3f} vs {silence:.3f} gap/jaw)"


def _own_note(report: QualityReport, output: float | None, own: float | None) -> str:
    fraction = report.own_speech_fraction
    if fraction is None:
        return " (needs a template with its own speech)"
    if own is None or output is None:
        return f" (the template talks on {fraction:.0%} of its frames; needs 20 % with a face)"
    return f" ({output:.3f} vs own {own:.3f} gap/jaw)"


def describe_report(report: QualityReport) -> list[str]:
    """The report for people: one line per figure, thresholded ones led by PASS, FAIL or n/a."""
    lines = [
        f"{report.frame_count} frames at {report.fps:g} fps ({report.duration_s:.2f} s); "
        f"the independent mouth meter found the face on {report.faces_found}"
    ]
    for check in check_report(report):
        mark = "n/a " if check.passed is None else ("PASS" if check.passed else "FAIL")
        lines.append(f"{mark}  {check.label:26} {check.value:40} needs {check.needs}")
    ssim = "n/a" if report.outside_mouth_ssim is None else f"{report.outside_mouth_ssim:.3f}"
    jitter = "n/a" if report.mouth_jitter is None else f"{report.mouth_jitter:.3f} eye distances"
    correlation, lag = report.tracker_sync_correlation, report.tracker_sync_lag_frames
    tracker = "n/a" if correlation is None or lag is None else f"{correlation:.2f} r at lag {lag}"
    lines += [
        f"      {'outside-mouth SSIM':26} {ssim}",
        f"      {'mouth jitter':26} {jitter} (renderer's tracker)",
        f"      {'renderer-tracker sync':26} {tracker} (MediaPipe, drove the render: "
        "not independent; face on "
        f"{report.tracker_faces_found} frames)",
    ]
    return lines + describe_lse(report)


def describe_lse(report: QualityReport) -> list[str]:
    """SyncNet's lines (none when no SyncNet checkpoint was given). LSE has no pass mark of
    its own: it is read against published figures for real and generated video."""
    if report.lse_d is None or report.lse_c is None:
        return []
    offset = report.lse_av_offset_frames
    return [
        f"      {'SyncNet LSE-D':26} {report.lse_d:.3f} (distance; lower is better: "
        f"syncnet_python's real example {TYPICAL_LSE_D_REAL:.2f}, Wav2Lip on LRS2 "
        f"{TYPICAL_LSE_D_WAV2LIP:.2f})",
        f"      {'SyncNet LSE-C':26} {report.lse_c:.3f} (confidence; higher is better: "
        f"syncnet_python's real example {TYPICAL_LSE_C_REAL:.2f}, Wav2Lip on LRS2 "
        f"{TYPICAL_LSE_C_WAV2LIP:.2f})",
        f"      {'SyncNet AV offset':26} {offset} frames (in sync: |offset| ≤ "
        f"{MAX_SYNC_LAG_FRAMES}; positive: the lips move after the sound; "
        f"{report.lse_window_count} windows)",
    ]
