"""Bounded JSON: nesting depth measured before any parser recurses. Pure.

Python's ``json`` module (its C scanner and its pure-Python fallback alike) recurses once per
``[`` or ``{``; a document nested some thousands deep raises ``RecursionError`` (or, in a thread
with a small stack, worse) before any hook sees a value, so a depth check inside the parse comes
too late. :func:`nesting_depth` measures the depth in linear time and without recursion: string
literals are removed (a bracket inside a string does not nest), then everything but brackets, and
the running depth of what is left is accumulated in C.

The measure never under-counts what the scanner would reach: up to the first syntax error, the
scanner and the string pattern agree on where every string starts and ends, and an unterminated
string runs to the end of the text for both. It may over-count only in text that is not JSON.

Every parser of untrusted JSON (safetensors headers and shard indexes, manifest JSON, proof
bundles, audit and trust state) calls :func:`check_depth` or :func:`loads` before ``json.loads``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from client.errors import FormatError

#: Deeper than any document of ours (a safetensors header is 3 levels, a bundle 4, manifest JSON 5).
MAX_DEPTH = 64

# A string literal: its characters, escapes (a backslash and any one character), then the closing
# quote, or the end of the text (an unterminated string, possibly ending in a lone backslash). It
# always matches where it starts, so no start is retried: linear time.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_STEP = [0] * 256
for _c in b"[{":
    _STEP[_c] = 1
for _c in b"]}":
    _STEP[_c] = -1


def _outside_strings(data: bytes) -> bytes:
    """``data`` with every string literal removed. Without a backslash there is no escape, so strings are
    exactly what lies between consecutive quotes (a split, much faster than the pattern)."""
    if b"\\" not in data:
        return b"".join(data.split(b'"')[0::2])
    return _STRING.sub(b"", data)


def nesting_depth(text: str | bytes) -> int:
    """The deepest ``[``/``{`` nesting of a JSON text (0 for a scalar), counting no bracket inside a string.

    Linear in ``len(text)``; never recurses. For text that is not JSON the result is an upper bound
    on the depth a JSON parser reaches before it fails.
    """
    # Brackets, quotes and backslashes are ASCII, so the UTF-8 bytes (surrogates passed through) nest alike.
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    brackets = _outside_strings(data).translate(None, _NOT_BRACKETS)
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets)), default=0))


def check_depth(text: str | bytes, what: str, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`FormatError` (``"<what> nests N levels deep, more than <limit>"``) if ``text`` nests too deep."""
    depth = nesting_depth(text)
    if depth > limit:
        raise FormatError(f"{what} nests {depth} levels deep, more than {limit}")


def loads(
    text: str | bytes,
    what: str,
    *,
    limit: int = MAX_DEPTH,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """``json.loads(text)`` after :func:`check_depth`; any refusal is a :class:`FormatError` naming ``what``.

    A :class:`FormatError` raised by ``object_pairs_hook`` passes through unchanged.
    """
    check_depth(text, what, limit)
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except FormatError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise FormatError(f"{what} is not JSON: {err}") from err
