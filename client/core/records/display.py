"""Signer-chosen text on a terminal: escaped on output, and checked before it is registered. Pure.

A record's names and versions are whatever its signer chose. The record encoding refuses C0
controls in them (``model.py``), but not C1 controls (U+0080..U+009F: U+009B is a CSI that
terminals obey), bidirectional overrides (U+202E turns ``evil-model 1`` into something that reads
otherwise) or other invisible format characters. Two rules, one per side:

- **Output** (:func:`safe_text`): every character that is not printable (``str.isprintable``: the
  Unicode categories Cc, Cf, Cs, Co, Cn, Zl, Zp and every space but U+0020) is shown as a Python
  escape (``\\x9b``, ``\\u202e``, ``\\U000e0001``), and a backslash as ``\\\\``, so the rendering is
  one line, inert, and tells two different strings apart. Used wherever the CLI and the bundle
  report print a signer-chosen string (``jsonform.named_label`` and ``describe``, lineage
  relations, match labels). JSON output needs nothing more (``json.dumps`` escapes controls and,
  with ``ensure_ascii``, everything else).
- **Registration** (:func:`check_display_names`): a dataset's or checkpoint's name, version and
  run must be NFC (Unicode normalisation form C, so two spellings of one name cannot both be
  registered) and contain no character :func:`safe_text` would escape (backslash excepted). Applied
  by the client before it signs (``client/api.py``) and by the registry's admission
  (``ledger/registry/hook.py``); records already logged still parse and verify, and are escaped
  when shown. Confusable characters (a Cyrillic ``а`` in ``lаb``) are not refused: compare ids.
"""

from __future__ import annotations

import unicodedata
from typing import assert_never

from client.core.records.model import Attestation, Dataset, Dispute, Identity, ModelCheckpoint, Statement
from client.errors import InvalidInputError


class UnsafeTextError(InvalidInputError):
    """A name or version that a terminal would not show as written (controls, bidi, not NFC)."""


def _escape(ch: str) -> str:
    n = ord(ch)
    if n <= 0xFF:
        return f"\\x{n:02x}"
    if n <= 0xFFFF:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"


def safe_text(text: str) -> str:
    """``text`` with every non-printable character escaped and ``\\`` doubled: one inert line."""
    if text.isprintable() and "\\" not in text:
        return text  # the common case, without building a new string
    return "".join("\\\\" if ch == "\\" else ch if ch.isprintable() else _escape(ch) for ch in text)


def text_problem(text: str) -> str | None:
    """Why ``text`` may not be registered as a name or version (see the module docstring), or None."""
    bad = next((ch for ch in text if not ch.isprintable()), None)
    if bad is not None:
        what = unicodedata.name(bad, "unnamed")
        return f"contains {_escape(bad)} ({what}, category {unicodedata.category(bad)}), which a terminal hides"
    if not unicodedata.is_normalized("NFC", text):
        return "is not in Unicode normalisation form NFC"
    return None


def check_display_names(s: Statement) -> None:
    """Refuse a dataset or checkpoint whose name, version or run :func:`text_problem` objects to.

    Raises UnsafeTextError naming the field. Identity names are ASCII already; claims carry no names.
    """
    fields: tuple[tuple[str, str], ...]
    match s:
        case Dataset():
            fields = (("dataset name", s.name), ("dataset version", s.version))
        case ModelCheckpoint():
            fields = (("model name", s.model), ("run", s.run))
        case Identity() | Attestation() | Dispute():
            return
        case _:
            assert_never(s)
    for what, value in fields:
        problem = text_problem(value)
        if problem is not None:
            raise UnsafeTextError(f"{what} '{safe_text(value)}' {problem}")
