"""Stage s5: put a re-synthesised region back into the frame (alpha blend, paste)."""

from __future__ import annotations

import numpy as np

from talkingface.vocabulary import MouthRender, RenderedFrame


def alpha_blend(base: np.ndarray, top: np.ndarray, alpha_f32: np.ndarray) -> np.ndarray:
    """base·(1-α) + top·α, rounded to uint8; α (h, w) in 0..1 is anti-aliased at edges."""
    a = alpha_f32[..., None]
    mixed = base.astype(np.float32) * (1.0 - a) + top.astype(np.float32) * a
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def paste_region(frame_rgb: np.ndarray, region_rgb: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """A copy of the frame with `region_rgb` placed at (x0, y0); the input is never modified."""
    out = frame_rgb.copy()
    h, w = region_rgb.shape[:2]
    out[y0 : y0 + h, x0 : x0 + w] = region_rgb
    return out


def blend_region(item: MouthRender) -> RenderedFrame:
    """Composite the interior over the warped region and paste it into a copy of the frame."""
    if item.warped is None:
        return RenderedFrame(item.tag, item.index, item.image, face_rendered=False)
    region = item.warped
    if item.interior_f32 is not None and item.alpha_f32 is not None:
        region = alpha_blend(region, item.interior_f32, item.alpha_f32)
    image = paste_region(item.image, region, item.x0, item.y0)
    return RenderedFrame(item.tag, item.index, image, face_rendered=True)
