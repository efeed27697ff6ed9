"""Draws docs/images/wav2lip-options.png: what each wav2lip quality option changes, on a real
photo (scikit-image's astronaut, public domain) tracked by the project's own face tracker.

Outlines and tints, not generated mouths: the project ships no Wav2Lip weights, and random
weights paint noise. Run: python -m bench.wav2lip_sheet [OUT.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from talkingface.config import ResizeQuality, Wav2LipMaskKind
from talkingface.engines.mouth_frame import mouth_frame
from talkingface.engines.wav2lip.face_boxes import padded_boxes, raw_box, smooth_boxes
from talkingface.engines.wav2lip.masks import region_mask
from talkingface.face.track import FaceTracker
from talkingface.samples import astronaut_photo, iter_template_frames_from_photo

TILE_PX = 240
FRAMES = 12
GREEN, ORANGE, CYAN, MAGENTA = (60, 200, 60), (255, 150, 0), (0, 200, 255), (230, 60, 200)


def _tracked() -> tuple[list[np.ndarray], list[np.ndarray]]:
    frames = list(iter_template_frames_from_photo(astronaut_photo(), frame_count=FRAMES))
    tracker = FaceTracker(fps=25.0)
    landmarks = []
    for frame in frames:
        found = tracker.process(frame)
        assert found is not None, "the astronaut's face is always found"
        landmarks.append(found.landmarks_f32)
    return frames, landmarks


def _rect(image: np.ndarray, box: np.ndarray, colour: tuple[int, int, int], width: int = 2) -> None:
    x1, y1, x2, y2 = (int(v) for v in box)
    cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), colour, width)


def _tint(
    image: np.ndarray, mask: np.ndarray, box: np.ndarray, colour: tuple[int, int, int]
) -> None:
    x1, y1, x2, y2 = (int(v) for v in box)
    region = image[y1:y2, x1:x2].astype(np.float32)
    a = 0.55 * mask[..., None]
    image[y1:y2, x1:x2] = (region * (1 - a) + np.array(colour, np.float32) * a).astype(np.uint8)


def _tile(image: np.ndarray, centre: tuple[float, float], side: float, label: str) -> np.ndarray:
    cx, cy = centre
    x1, y1 = int(cx - side / 2), int(cy - side / 2)
    crop = image[max(y1, 0) : y1 + int(side), max(x1, 0) : x1 + int(side)]
    tile = cv2.resize(crop, (TILE_PX, TILE_PX), interpolation=cv2.INTER_AREA)
    cv2.rectangle(tile, (0, 0), (TILE_PX, 18), (0, 0, 0), -1)
    cv2.putText(
        tile, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA
    )
    return tile


def _resize_tile(frame: np.ndarray, box: np.ndarray, quality: ResizeQuality) -> np.ndarray:
    """The mouth after a round trip through the 96 px generator crop (what resize changes)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    crop = frame[y1:y2, x1:x2]
    down = cv2.INTER_LINEAR if quality is ResizeQuality.LINEAR else cv2.INTER_AREA
    up = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}
    small = cv2.resize(crop, (96, 96), interpolation=down)
    back = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=up[quality.value])
    h = back.shape[0]
    mouth = back[h // 2 : h * 7 // 8, (x2 - x1) // 5 : (x2 - x1) * 4 // 5]
    tile = cv2.resize(mouth, (TILE_PX, TILE_PX), interpolation=cv2.INTER_NEAREST)
    return _tile(
        tile, (TILE_PX / 2, TILE_PX / 2), TILE_PX, f"resize = {quality.value} (mouth, zoom)"
    )


def draw_sheet() -> np.ndarray:
    frames, landmarks = _tracked()
    frame = frames[-1]
    height, width = frame.shape[:2]
    raw = np.array([raw_box(lm) for lm in landmarks], np.float32)
    default = padded_boxes(raw, (0, 10, 0, 0), width, height)
    face = default[-1]
    centre = ((face[0] + face[2]) / 2, (face[1] + face[3]) / 2)
    side = 1.6 * max(face[2] - face[0], face[3] - face[1])

    pads = frame.copy()
    _rect(pads, padded_boxes(raw, (0, 0, 0, 0), width, height)[-1], CYAN, 1)
    _rect(pads, face, GREEN)
    _rect(pads, padded_boxes(raw, (0, 30, 15, 15), width, height)[-1], ORANGE)

    smoothing = frame.copy()
    for box in padded_boxes(raw, (0, 10, 0, 0), width, height):
        _rect(smoothing, box, ORANGE, 1)
    for box in padded_boxes(smooth_boxes(raw, 5), (0, 10, 0, 0), width, height):
        _rect(smoothing, box, GREEN, 1)

    masks = []
    mouth = mouth_frame(landmarks[-1])
    for kind, colour in ((Wav2LipMaskKind.MOUTH, MAGENTA), (Wav2LipMaskKind.LOWER_FACE, CYAN)):
        tinted = frame.copy()
        _tint(tinted, region_mask(kind, mouth, tuple(int(v) for v in face)), face, colour)
        _rect(tinted, face, GREEN, 1)
        masks.append(_tile(tinted, centre, side, f"mask = {kind.value}"))

    top = [
        _tile(pads, centre, side, "pads 0 / 0,10,0,0 / 0,30,15,15"),
        _tile(smoothing, centre, side, f"{FRAMES} frames, smoothing 1 / 5"),
        masks[0],
    ]
    bottom = [
        masks[1],
        _resize_tile(frame, face, ResizeQuality.LINEAR),
        _resize_tile(frame, face, ResizeQuality.LANCZOS),
    ]
    return np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0)


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/wav2lip-options.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet = draw_sheet()
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"{out}: {out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
