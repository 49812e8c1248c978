"""Durations and times as schedulers print them and as people read them: one parser, one printer.

Used by the scheduler modules (Slurm's ``TimeLimit``, ``StartTime``), the cluster facts of the
spawn form and the session cards, so a wall time means the same everywhere.
"""

from __future__ import annotations

import datetime as _dt


def parse_duration(text: str) -> int | None:
    """Seconds from a scheduler duration: ``D-HH:MM:SS``, ``HH:MM:SS``, ``MM:SS``; None if unlimited/unknown."""
    text = (text or "").strip()
    if not text or text.upper() in ("UNLIMITED", "INFINITE", "N/A", "NOT_SET", "INVALID"):
        return None
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        if not d.isdigit():
            return None
        days = int(d)
    parts = text.split(":")
    if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
        return None
    nums = [int(p) for p in parts]
    if len(nums) == 1:  # Slurm: a bare number is minutes
        nums = [0, nums[0], 0]
    elif len(nums) == 2:
        nums = [0] + nums
    h, m, s = nums
    return days * 86400 + h * 3600 + m * 60 + s


def parse_timestamp(text: str) -> float | None:
    """Epoch seconds from an ISO local timestamp (Slurm's ``2026-12-02T05:36:51``); None for N/A."""
    text = (text or "").strip()
    if not text or text in ("N/A", "Unknown", "None", "(null)"):
        return None
    try:
        return _dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def human_seconds(seconds) -> str:
    """``3 h 05 min``, ``12 min``, ``40 s``: durations as a person reads them."""
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def clock(epoch) -> str:
    """An epoch as ``HH:MM`` UTC today, or ``YYYY-MM-DD HH:MM UTC`` another day."""
    if epoch is None:
        return ""
    t = _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc)
    today = _dt.datetime.now(_dt.timezone.utc).date()
    return t.strftime("%H:%M UTC") if t.date() == today else t.strftime("%Y-%m-%d %H:%M UTC")
