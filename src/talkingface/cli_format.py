"""How the CLI writes values for people: durations with units, ages, short ids, cut text."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

SHORT_ID_CHARS = 8


def format_duration(seconds: float | None) -> str:
    """'0.35 s', '2.4 s', '42 s', '3 min 12 s', '1 h 05 min', '2 d 03 h'; '—' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    if whole < 86400:
        hours, rest = divmod(whole // 60, 60)
        return f"{hours} h {rest:02d} min"
    days, rest = divmod(whole // 3600, 24)
    return f"{days} d {rest:02d} h"


def format_age(instant: str | None, *, now: datetime | None = None) -> str:
    """How long ago an ISO 8601 instant was, coarse enough for a list column ('3 min')."""
    if not instant:
        return "—"
    then = datetime.fromisoformat(instant)
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    age_s = ((now or datetime.now(UTC)) - then).total_seconds()
    if age_s < 60:
        return f"{max(int(age_s), 0)} s"
    if age_s < 3600:
        return f"{int(age_s // 60)} min"  # the seconds of an age are noise
    return format_duration(age_s)


def short_id(full_id: str) -> str:
    """The first characters of an id, as lists show it (--json keeps the whole id)."""
    return full_id[:SHORT_ID_CHARS]


def cut(text: str, width: int) -> str:
    """`text` in at most `width` characters, an ellipsis marking a cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def format_figure(key: str, value: Any) -> str:  # Any: a JSON value (stats, bench)
    """A named figure for people: durations (keys ending _s) with units, rates (keys ending
    _rate) as percentages, objects as `name value` pairs, the rest as JSON."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {format_figure(key, v)}" for k, v in value.items())
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if key.endswith("_s") and (is_number or value is None):
        return format_duration(None if value is None else float(value))
    if key.endswith("_rate") and (is_number or value is None):
        return "—" if value is None else f"{value:.0%}"
    return json.dumps(value)
