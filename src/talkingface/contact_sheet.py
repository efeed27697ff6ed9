"""Contact sheets: a labelled PNG grid of output frames and mouth close-ups (`evaluate`), and
mouth moments, template and output side by side (bench/quality_matrix.py --sheets)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from talkingface.errors import Stage, UnexpectedError, translate_errors
from talkingface.face import mesh
from talkingface.mouth_meter import MouthMeter

LABEL_PX = 24  # height of the caption bar under each cell
_BACKGROUND_RGB = (32, 32, 32)
_LABEL_RGB = (235, 235, 235)
SHEET_FRAME_COUNT = 12
SHEET_COLUMNS = 4
MOUTH_CROP_EYE = 1.1  # side of the mouth close-up, in eye distances


@dataclass(frozen=True, slots=True)
class SheetFrame:
    """An output frame chosen for the evaluation sheet, with what the tracker saw on it."""

    index: int  # output frame number
    image: np.ndarray  # (H, W, 3) RGB uint8, full resolution
    landmarks_f32: np.ndarray | None  # (468, 2) px; None where no face was found
    opening: float  # mouth opening ratio (NaN where no face)


def sheet_indices(frame_count: int, count: int = SHEET_FRAME_COUNT) -> set[int]:
    """`count` evenly spaced frame numbers of a video of `frame_count` frames (first and last)."""
    if frame_count <= 0:
        return {0}
    chosen = np.linspace(0, frame_count - 1, min(count, frame_count)).round()
    return {int(i) for i in chosen}


def write_evaluation_sheet(frames: Sequence[SheetFrame], fps: float, path: Path) -> Path:
    """Rows of whole frames, each followed by a row of the same frames' mouths, zoomed in."""
    cells: list[np.ndarray] = []
    labels: list[str] = []
    for row_start in range(0, len(frames), SHEET_COLUMNS):
        row = frames[row_start : row_start + SHEET_COLUMNS]
        blanks = SHEET_COLUMNS - len(row)  # keep each mouth under its frame
        for frame in row:
            shown = f"open {frame.opening:.2f}" if math.isfinite(frame.opening) else "no face"
            cells.append(frame.image)
            labels.append(f"#{frame.index}  {frame.index / fps:.2f}s  {shown}")
        cells.extend(np.zeros((8, 8, 3), np.uint8) for _ in range(blanks))
        labels.extend("" for _ in range(blanks))
        cells.extend(_mouth_cell(frame) for frame in row)
        labels.extend(f"mouth #{frame.index} (zoomed)" for frame in row)
    return write_contact_sheet(cells, path, columns=SHEET_COLUMNS, labels=labels)


def _mouth_cell(frame: SheetFrame) -> np.ndarray:
    height, width = frame.image.shape[:2]
    if frame.landmarks_f32 is None:
        return mouth_crop(frame.image, (width / 2, height / 2), min(height, width) // 3)
    lips = frame.landmarks_f32[list(mesh.LIPS_OUTER)].astype(np.float64)
    centre = lips.mean(axis=0)
    side = round(MOUTH_CROP_EYE * mesh.eye_distance_px(frame.landmarks_f32))
    return mouth_crop(frame.image, (float(centre[0]), float(centre[1])), side)


def sheet_size_px(cell_count: int, *, columns: int = 4, cell_px: int = 320) -> tuple[int, int]:
    """(width, height) of the sheet `write_contact_sheet` draws for `cell_count` cells."""
    rows = max(1, -(-cell_count // columns))
    return columns * cell_px, rows * (cell_px + LABEL_PX)


def write_contact_sheet(
    frames: Sequence[np.ndarray],
    path: str | Path,
    *,
    columns: int = 4,
    cell_px: int = 320,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write frames as a PNG grid, each fitted into a square cell with its caption underneath."""
    if not frames:
        raise ValueError("a contact sheet needs at least one frame")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"{len(labels)} labels for {len(frames)} frames")
    if columns < 1 or cell_px < 16:
        raise ValueError("columns must be >= 1 and cell_px >= 16")
    width, height = sheet_size_px(len(frames), columns=columns, cell_px=cell_px)
    sheet = np.empty((height, width, 3), np.uint8)
    sheet[:] = _BACKGROUND_RGB
    for number, frame in enumerate(frames):
        top = (number // columns) * (cell_px + LABEL_PX)
        left = (number % columns) * cell_px
        sheet[top : top + cell_px, left : left + cell_px] = _fit_to_cell(frame, cell_px)
        label = labels[number] if labels is not None else f"#{number}"
        _draw_label(sheet, label, left=left, baseline=top + cell_px + LABEL_PX - 7)
    return _write_png(sheet, Path(path))


def mouth_crop(
    frame: np.ndarray, centre_xy: tuple[float, float], side_px: int, *, cell_px: int = 320
) -> np.ndarray:
    """A square crop of the original frame around the mouth, scaled to `cell_px` (zoomed in).

    The crop is taken from the full-resolution frame, so codec and blending artefacts stay
    visible; parts outside the frame are padded with the sheet's background colour.
    """
    side = max(8, int(side_px))
    x0 = round(centre_xy[0] - side / 2)
    y0 = round(centre_xy[1] - side / 2)
    pad = side
    padded = cv2.copyMakeBorder(
        frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=_BACKGROUND_RGB
    )
    ys = int(np.clip(y0 + pad, 0, padded.shape[0] - side))
    xs = int(np.clip(x0 + pad, 0, padded.shape[1] - side))
    crop = padded[ys : ys + side, xs : xs + side]
    interpolation = cv2.INTER_CUBIC if side < cell_px else cv2.INTER_AREA
    return np.asarray(cv2.resize(crop, (cell_px, cell_px), interpolation=interpolation))


def _fit_to_cell(frame: np.ndarray, cell_px: int) -> np.ndarray:
    """Scale a frame to fit a square cell, keeping its aspect ratio (letterboxed)."""
    height, width = frame.shape[:2]
    scale = cell_px / max(height, width)
    new_w = max(1, min(cell_px, round(width * scale)))
    new_h = max(1, min(cell_px, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
    resized = cv2.resize(np.ascontiguousarray(frame), (new_w, new_h), interpolation=interpolation)
    cell = np.empty((cell_px, cell_px, 3), np.uint8)
    cell[:] = _BACKGROUND_RGB
    top, left = (cell_px - new_h) // 2, (cell_px - new_w) // 2
    cell[top : top + new_h, left : left + new_w] = resized
    return cell


def _draw_label(sheet: np.ndarray, text: str, *, left: int, baseline: int) -> None:
    cv2.putText(
        sheet,
        text,
        (left + 6, baseline),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        _LABEL_RGB,
        1,
        cv2.LINE_AA,
    )


def _write_png(sheet_rgb: np.ndarray, path: Path) -> Path:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(sheet_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise UnexpectedError(
            f"OpenCV could not encode the contact sheet {path} as PNG.", stage=Stage.EVALUATE
        )
    with translate_errors(Stage.EVALUATE, context=f"writing contact sheet {path}"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encoded.tobytes())
    return path


# --- mouth moments: template and output mouths side by side ---------------------------------


MOUTH_MOMENT_CROP = 2.2  # side of a mouth crop, in mouth widths (corner to corner)
MOUTH_CELL_MIN_PX = 280  # smaller crops are enlarged by a whole factor (labels must fit)
_MOUTH_POINTS = slice(48, 68)  # dlib's outer and inner lip points
_MOUTH_CORNERS = (48, 54)


@dataclass(frozen=True, slots=True)
class MouthMoment:
    """One output moment for the mouth sheet, with the template frame it was made from."""

    label: str  # "most closed", "middle", "most open"
    index: int  # output frame number
    opening: float  # independent opening of the output frame
    output: np.ndarray  # (H, W, 3) RGB uint8, full resolution
    template: np.ndarray  # (H, W, 3) RGB uint8, the same size


def mouth_moment_indices(opening: np.ndarray) -> list[tuple[str, int]]:
    """(label, output frame) for the most closed, the middle (median) and the most open
    frames among those with a face; empty when no frame has one."""
    measured = np.flatnonzero(np.isfinite(opening))
    if measured.size == 0:
        return []
    ordered = measured[np.argsort(opening[measured], kind="stable")]
    picks = (("most closed", 0), ("middle", ordered.size // 2), ("most open", ordered.size - 1))
    return [(label, int(ordered[rank])) for label, rank in picks]


def write_mouth_moments_sheet(moments: Sequence[MouthMoment], path: Path) -> Path:
    """One row per moment: the template's mouth, then the output's, cropped at the same place
    (the output's mouth, read by the independent meter) from the full-resolution frames.

    Crops are never resampled: small ones are enlarged by a whole factor with each pixel
    shown as a block, so codec and blending artefacts stay as they are.
    """
    if not moments:
        raise ValueError("a mouth sheet needs at least one moment")
    meter = MouthMeter()
    boxes = [_mouth_box(meter, moment.output) for moment in moments]
    side_px = max(box[2] for box in boxes)
    factor = max(1, math.ceil(MOUTH_CELL_MIN_PX / side_px))
    cells: list[np.ndarray] = []
    labels: list[str] = []
    for moment, (x, y, _) in zip(moments, boxes, strict=True):
        for frame in (moment.template, moment.output):
            crop = _crop_px(frame, (x, y), side_px)
            cells.append(np.repeat(np.repeat(crop, factor, axis=0), factor, axis=1))
        labels.append(f"template under #{moment.index}")
        labels.append(f"#{moment.index} {moment.label} {moment.opening:.3f}")
    return write_contact_sheet(cells, path, columns=2, cell_px=side_px * factor, labels=labels)


def _mouth_box(meter: MouthMeter, frame: np.ndarray) -> tuple[float, float, int]:
    """(centre x, centre y, side px) of the mouth crop; the frame centre if no face is read."""
    reading = meter.read(frame)
    height, width = frame.shape[:2]
    if reading is None:
        return width / 2, height / 2, min(height, width) // 3
    mouth = reading.points_px[_MOUTH_POINTS]
    left, right = reading.points_px[list(_MOUTH_CORNERS)]
    side = round(MOUTH_MOMENT_CROP * float(np.hypot(*(right - left))))
    return float(mouth[:, 0].mean()), float(mouth[:, 1].mean()), max(32, side)


def _crop_px(frame: np.ndarray, centre_xy: tuple[float, float], side_px: int) -> np.ndarray:
    """A `side_px` square of `frame` around the centre, padded outside the frame, unscaled."""
    pad = side_px
    padded = cv2.copyMakeBorder(
        frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=_BACKGROUND_RGB
    )
    x0 = int(np.clip(round(centre_xy[0] - side_px / 2) + pad, 0, padded.shape[1] - side_px))
    y0 = int(np.clip(round(centre_xy[1] - side_px / 2) + pad, 0, padded.shape[0] - side_px))
    return np.ascontiguousarray(padded[y0 : y0 + side_px, x0 : x0 + side_px])
