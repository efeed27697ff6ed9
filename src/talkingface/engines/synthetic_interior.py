"""A synthesised mouth interior for templates that never open their mouth (photos, idle clips).

Drawn per output pixel in mouth units, from each pixel's distance below the upper inner lip and
above the lower one (S units) and its column between the inner corners, so every layer keeps
its real size whatever the opening: inner-lip edges with thickness, an upper-teeth row that
shows only as far as the opening allows, a cavity shaded for depth, and on wide openings the
tongue and a hint of the lower teeth. Colours follow the person's lip colour and lighting.
"""

from __future__ import annotations

import numpy as np

from talkingface.engines.mouth_frame import smoothstep

LIP_EDGE_S = 0.014  # thickness of the moist inner lip visible inside an opening
UPPER_TEETH_S = 0.058  # visible height of the upper incisors below the lip edge
TEETH_SHOW_GAP = (0.025, 0.06)  # openings over which the teeth fade in
TONGUE_GAP = (0.05, 0.14)  # openings over which the tongue and lower teeth appear
TEETH_RGB = np.array([196.0, 186.0, 172.0], dtype=np.float32)
TEETH_SHADOW_S = 0.012  # the upper lip shades the top of the teeth over this height
TOOTH_COUNT = 7.0  # incisor widths across the visible row (separations are faint)


def synthesised_interior(
    depth_top: np.ndarray,
    depth_bottom: np.ndarray,
    u: np.ndarray,
    lip_rgb: np.ndarray,
    scale_px: float,
) -> np.ndarray:
    """(h, w, 3) float32 RGB for the pixels of an opened gap.

    `depth_top`/`depth_bottom`: S units below the upper and above the lower inner lip (their
    sum is the local opening); `u`: 0..1 between the inner corners; `lip_rgb`: the current lip
    colour; `scale_px`: pixels per S unit (for one-pixel anti-aliased edges).
    """
    dt = np.maximum(depth_top, 0.0)
    db = np.maximum(depth_bottom, 0.0)
    gap = dt + db
    px = 1.0 / max(scale_px, 1.0)  # one pixel in S units
    lip = np.asarray(lip_rgb, dtype=np.float32).reshape(1, 1, 3)
    light = float(np.clip(lip.max() / 185.0, 0.55, 1.1))  # exposure: lips' red ~ skin's
    side = np.clip(np.minimum(u, 1.0 - u) * 2.0, 0.0, 1.0)  # 0 at a corner, 1 at the centre

    # Cavity: darkest deep inside and towards the corners, warm near the lips.
    near_lip = np.exp(-np.minimum(dt, db) / 0.025)
    cavity = (0.16 + 0.18 * near_lip + 0.08 * side)[..., None] * lip + 6.0
    image = cavity

    # Upper teeth: just behind the upper lip edge, in the lip's shadow at the top, receding
    # into the dark towards the corners (only the front teeth catch light), faint gaps.
    teeth_top = 0.5 * LIP_EDGE_S
    teeth_bottom = teeth_top + np.minimum(UPPER_TEETH_S, 0.62 * gap)
    tip_soft = 2.0 * px
    coverage = smoothstep(teeth_top - px, teeth_top + px, dt) * (
        1.0 - smoothstep(teeth_bottom - tip_soft, teeth_bottom + tip_soft, dt)
    )
    coverage *= smoothstep(*TEETH_SHOW_GAP, gap) * smoothstep(0.1, 0.75, side)
    tooth_edges = 1.0 - 0.10 * np.abs(np.cos(np.pi * TOOTH_COUNT * (u - 0.5))) ** 24
    lip_shadow = 0.7 + 0.3 * smoothstep(teeth_top, teeth_top + TEETH_SHADOW_S, dt)
    tip_shade = 1.0 - 0.2 * smoothstep(
        0.5, 1.0, (dt - teeth_top) / np.maximum(teeth_bottom - teeth_top, 1e-6)
    )
    teeth = (
        TEETH_RGB.reshape(1, 1, 3)
        * (light * (0.6 + 0.4 * side) * tooth_edges * tip_shade * lip_shadow)[..., None]
    )
    image = image + coverage[..., None] * (teeth - image)

    # Tongue and lower teeth on wide openings, rising from the lower lip, highest mid-mouth.
    wide = smoothstep(*TONGUE_GAP, gap)
    tongue_height = (0.35 * gap) * wide * np.sqrt(side)
    tongue = smoothstep(-2.0 * px, 2.0 * px, tongue_height - db) * wide
    # Its back falls away into the dark; its front, near the lower lip, catches the light.
    tongue_light = 0.5 + 0.25 * (1.0 - db / np.maximum(tongue_height, 1e-6)).clip(0.0, 1.0)
    tongue_rgb = tongue_light[..., None] * lip + np.float32(6.0)
    image = image + (0.85 * tongue)[..., None] * (tongue_rgb - image)
    lower_teeth = (
        (1.0 - smoothstep(LIP_EDGE_S, LIP_EDGE_S + 0.012, db)) * wide * smoothstep(0.2, 0.6, side)
    )
    image = image + (0.35 * lower_teeth)[..., None] * (
        TEETH_RGB.reshape(1, 1, 3) * light * 0.8 - image
    )

    # Inner lip edges: the lips' moist inner surface, in their own colour where it meets the
    # lip and darkening as it turns into the mouth; thicker as the lips part (more of the
    # inner surface shows), never a dark outline.
    thickness = LIP_EDGE_S * (1.0 + smoothstep(0.02, 0.12, gap))[..., None]
    inner = np.minimum(dt, db)[..., None] / thickness  # 0 at the lip line, 1 inside
    edge = 1.0 - smoothstep(0.35, 1.0, inner)
    edge_rgb = lip * (0.95 - 0.35 * np.clip(inner, 0.0, 1.0))
    image = image + edge * (edge_rgb - image)
    return np.clip(image, 0.0, 255.0).astype(np.float32)
