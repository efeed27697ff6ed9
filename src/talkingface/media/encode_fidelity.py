"""How much of a template's own detail survives our H.264 encode, and the CRF that keeps it.

Everything outside lips, chin and jaw is copied from the template, but the output is encoded
again. A clean template loses little at the default CRF 18 (41-43 dB PSNR against its own
frames), while a grainy one (an old MPEG-4 Part 2 clip, film grain, sensor noise) loses its
grain: 37 dB, the face visibly smoothed next to the original. Template preparation encodes one
second of the template at a few CRFs and records the PSNR of each (`reencode_psnr_db`, cached
with the template); each job then encodes at the largest CRF, at most `engines.crf`, whose
PSNR reaches `engines.min_psnr_db`, never below `engines.min_crf`. Grainy templates thus
cost a larger file rather than their look; clean ones keep the default size.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable, Mapping

import av
import numpy as np

logger = logging.getLogger(__name__)

PROBE_CRFS = (23, 18, 15, 12, 10)  # measured in this order...
STOP_AT_DB = 42.0  # ...until one reaches this: above any sensible floor, so lower CRFs need not be
PROBE_FRAMES = 15  # the encoder's P-frames settle within half a second
PROBE_PRESET = "veryfast"


def reencode_psnr_db(frames_rgb: Iterable[np.ndarray], fps: float) -> dict[int, float]:
    """PSNR (dB, luma and chroma together, on RGB) of `frames_rgb` encoded with libx264 at each
    of PROBE_CRFS and decoded again; empty when there is nothing to measure."""
    frames = [_even(f) for _, f in zip(range(PROBE_FRAMES), frames_rgb, strict=False)]
    curve: dict[int, float] = {}
    for crf in PROBE_CRFS if frames else ():
        curve[crf] = _psnr_at(frames, fps, crf)
        if curve[crf] >= STOP_AT_DB:
            break
    return curve


def crf_for_fidelity(
    curve: Mapping[int, float], *, max_crf: int, min_crf: int, min_psnr_db: float
) -> int:
    """The largest CRF in [min_crf, max_crf] whose PSNR reaches `min_psnr_db` (interpolated
    over `curve`, extended linearly past its ends); max_crf when the curve is empty or the
    floor is off (≤ 0)."""
    if not curve or min_psnr_db <= 0 or min_crf >= max_crf:
        return max_crf
    for crf in range(max_crf, min_crf - 1, -1):
        if _psnr_estimate(curve, crf) >= min_psnr_db:
            return crf
    return min_crf


def _psnr_estimate(curve: Mapping[int, float], crf: int) -> float:
    points = sorted(curve.items())
    if len(points) == 1:
        return points[0][1] if crf >= points[0][0] else math.inf  # lower CRF: at least as good
    if crf < points[0][0]:
        (c0, p0), (c1, p1) = points[0], points[1]
    elif crf > points[-1][0]:
        (c0, p0), (c1, p1) = points[-2], points[-1]
    else:
        return float(np.interp(crf, [c for c, _ in points], [p for _, p in points]))
    return p0 + (crf - c0) * (p1 - p0) / (c1 - c0)


def _psnr_at(frames: list[np.ndarray], fps: float, crf: int) -> float:
    buffer = io.BytesIO()
    height, width = frames[0].shape[:2]
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(
            "libx264", rate=max(1, round(fps)), options={"crf": str(crf), "preset": PROBE_PRESET}
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    errors: list[float] = []
    with av.open(buffer, mode="r") as container:
        for original, frame in zip(frames, container.decode(video=0), strict=False):
            decoded = frame.to_ndarray(format="rgb24").astype(np.float64)
            errors.append(float(np.mean((decoded - original.astype(np.float64)) ** 2)))
    mse = max(float(np.mean(errors)) if errors else 0.0, 1e-10)
    return round(10.0 * float(np.log10(255.0**2 / mse)), 2)


def _even(image: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: drop a last odd row/column (the probe only needs the texture)."""
    height, width = image.shape[:2]
    return np.ascontiguousarray(image[: height - height % 2, : width - width % 2])
