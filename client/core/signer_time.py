"""Rendering a signer-chosen time: total for every integer. Pure.

A record's ``timestamp`` is whatever its signer wrote (docs/records.md), so any integer the encoding
carries must print: one outside the proleptic Gregorian years 1 to 9999 (``2**63 - 1``, a negative
billion-year time) is shown as the raw integer with a note, never raised as ``OverflowError``,
``OSError`` or ``ValueError`` as ``datetime.fromtimestamp`` does (its range also depends on the
platform's C library; this does not).
"""

from __future__ import annotations

import datetime

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
#: The unix seconds datetime can represent: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
MIN_SECONDS = int((datetime.datetime.min.replace(tzinfo=datetime.UTC) - _EPOCH).total_seconds())
MAX_SECONDS = int((datetime.datetime.max.replace(tzinfo=datetime.UTC, microsecond=0) - _EPOCH).total_seconds())


def signer_time(ts: int, *, iso: bool = True) -> str:
    """``ts`` (unix seconds, UTC) as ``2024-05-01T12:00:00Z`` (``iso``) or ``2024-05-01 12:00:00 UTC``;
    outside years 1..9999, ``"<ts> (unix seconds, outside years 1-9999)"``."""
    if not MIN_SECONDS <= ts <= MAX_SECONDS:
        return f"{ts} (unix seconds, outside years 1-9999)"
    t = _EPOCH + datetime.timedelta(seconds=ts)
    day = f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
    clock = f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return f"{day}T{clock}Z" if iso else f"{day} {clock} UTC"
