"""Durations, ages and ids as the CLI prints them for people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from talkingface.cli_format import cut, format_age, format_duration, format_figure, short_id


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.347, "0.35 s"),
        (2.44, "2.4 s"),
        (9.96, "10.0 s"),
        (42.4, "42 s"),
        (60, "1 min"),
        (192, "3 min 12 s"),
        (3599.4, "59 min 59 s"),
        (3900, "1 h 05 min"),
        (86399, "23 h 59 min"),
        (2 * 86400 + 3 * 3600, "2 d 03 h"),
        (None, "—"),
        (float("nan"), "—"),
        (-1.0, "0.00 s"),
    ],
)
def test_durations_carry_units_and_sensible_precision(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_ages_are_coarse_and_count_from_the_instant() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def age(delta: timedelta) -> str:
        return format_age((now - delta).isoformat(), now=now)

    assert age(timedelta(seconds=4.6)) == "4 s"
    assert age(timedelta(seconds=42)) == "42 s"
    assert age(timedelta(minutes=3, seconds=12)) == "3 min"
    assert age(timedelta(hours=1, minutes=5)) == "1 h 05 min"
    assert format_age(None) == "—"


def test_short_ids_and_cut_text() -> None:
    assert short_id("0123456789abcdef" * 2) == "01234567"
    assert cut("a" * 10, 5) == "aaaa…" and cut("abc", 5) == "abc"


def test_figures_give_durations_units_and_rates_percentages() -> None:
    assert format_figure("duration_s", {"p50": 2.44, "p90": None}) == "p50 2.4 s, p90 —"
    assert format_figure("success_rate", {"last_hour": 2 / 3}) == "last_hour 67%"
    assert format_figure("by_state", {"queued": 0}) == "queued 0"
    assert format_figure("audio_s", 192.0) == "3 min 12 s"
