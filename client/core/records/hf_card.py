"""Hugging Face model-card lineage: ``base_model`` / ``base_model_relation`` in and out. Pure.

A model card is a ``README.md`` whose YAML front matter (between a first line ``---`` and the
next line ``---``) may name the models it was made from::

    ---
    base_model: meta-llama/Llama-3.1-8B          # a string, or a list of strings
    base_model_relation: adapter                 # adapter | merge | quantized | finetune (optional)
    ---

:func:`read_card` returns those two keys and ignores the rest of the card. The YAML is untrusted:
the front matter is at most :data:`MAX_FRONT_MATTER` bytes, its events are screened before any
object is built (no anchors or aliases, so no alias bomb; at most :data:`MAX_DEPTH` levels and
:data:`MAX_EVENTS` events), and only ``yaml.safe_load`` builds values. :func:`write_card` renders
the block for a record's parents (docs/registry.md, "Hugging Face lineage").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from client.core.records.model import MAX_LIST, MAX_NAME, ModelRelation
from client.errors import FormatError, InvalidInputError

MAX_FRONT_MATTER = 64 * 1024
"""Largest front matter read (bytes of UTF-8); model cards' headers are a few KiB."""
MAX_DEPTH = 16
"""Deepest nesting of mappings and sequences accepted anywhere in the front matter."""
MAX_EVENTS = 20_000
"""Most YAML parser events (scalars, starts and ends) accepted."""

#: Hugging Face's relation -> ours (docs/records.md section 1).
FROM_HF: dict[str, ModelRelation] = {
    "adapter": ModelRelation.ADAPTER,
    "merge": ModelRelation.MERGE,
    "quantized": ModelRelation.QUANTIZATION,
    "finetune": ModelRelation.FINE_TUNE,
}
#: Ours -> Hugging Face's; relations with no Hugging Face counterpart are absent (written as comments).
TO_HF: dict[ModelRelation, str] = {
    ModelRelation.ADAPTER: "adapter",
    ModelRelation.MERGE: "merge",
    ModelRelation.QUANTIZATION: "quantized",
    ModelRelation.FINE_TUNE: "finetune",
    ModelRelation.CONTINUED_TRAINING: "finetune",
}
#: The relation recorded when a card names base models without ``base_model_relation``: we do not guess.
DEFAULT_RELATION = ModelRelation.OTHER


@dataclass(frozen=True, slots=True)
class CardLineage:
    """What a card says a model was made from: base model ids, in card order, and one relation for all."""

    base_models: tuple[str, ...]
    relation: ModelRelation
    relation_stated: bool  # False: the card has no base_model_relation (``relation`` is the default)


def front_matter(text: str) -> str | None:
    """The YAML between the card's first line ``---`` and the next ``---`` line; None without front matter.

    Raises FormatError when the block is never closed or is over :data:`MAX_FRONT_MATTER` bytes.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines[0].rstrip("\r ") != "---":
        return None
    size = 0
    for i in range(1, len(lines)):
        if lines[i].rstrip("\r ") == "---":
            return "\n".join(lines[1:i])
        size += len(lines[i].encode("utf-8", "surrogatepass")) + 1
        if size > MAX_FRONT_MATTER:
            break
    else:
        raise FormatError("model card: the front matter opened by '---' is never closed by a '---' line")
    raise FormatError(f"model card: front matter is more than {MAX_FRONT_MATTER} bytes")


def _screen(block: str) -> None:
    """Refuse anchors, aliases, tags beyond the core ones, deep nesting and too many events, before building."""
    depth = events = 0
    try:
        for ev in yaml.parse(block, Loader=yaml.SafeLoader):
            events += 1
            if events > MAX_EVENTS:
                raise FormatError(f"model card: front matter has more than {MAX_EVENTS} YAML events")
            if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None) is not None:
                raise FormatError("model card: front matter uses YAML anchors or aliases (refused: alias bombs)")
            if isinstance(ev, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise FormatError(f"model card: front matter nests more than {MAX_DEPTH} levels deep")
            elif isinstance(ev, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
    except yaml.YAMLError as err:
        raise FormatError(f"model card: front matter is not YAML: {err}") from err


def parse_front_matter(block: str) -> dict[str, object]:
    """The front matter as a mapping (screened first, then ``yaml.safe_load``). Raises FormatError."""
    _screen(block)
    try:
        data = yaml.safe_load(block)
    except (yaml.YAMLError, RecursionError) as err:
        raise FormatError(f"model card: front matter is not YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FormatError(f"model card: front matter is a {type(data).__name__}, not a mapping")
    return {str(k): v for k, v in data.items()}


def read_card(text: str) -> CardLineage:
    """``base_model`` and ``base_model_relation`` of a model card. A card without them yields no base models.

    Raises FormatError for a malformed or hostile header, InvalidInputError for values of the wrong
    shape: ``base_model`` must be a non-empty string or a list of distinct ones (at most 256, each at
    most 256 bytes); ``base_model_relation`` one of adapter, merge, quantized, finetune.
    """
    block = front_matter(text)
    if block is None:
        return CardLineage((), DEFAULT_RELATION, False)
    data = parse_front_matter(block)
    raw = data.get("base_model")
    if raw is None:
        models: list[str] = []
    elif isinstance(raw, str):
        models = [raw]
    elif isinstance(raw, list) and all(isinstance(m, str) for m in raw):
        models = list(raw)
    else:
        raise InvalidInputError("model card: base_model must be a string or a list of strings")
    if len(models) > MAX_LIST:
        raise InvalidInputError(f"model card: base_model lists {len(models)} models, more than {MAX_LIST}")
    for m in models:
        if not m.strip() or len(m.encode("utf-8", "surrogatepass")) > MAX_NAME or any(c < " " for c in m):
            raise InvalidInputError(f"model card: base_model {m[:80]!r} is empty, too long or has control characters")
    if len(set(models)) != len(models):
        raise InvalidInputError("model card: base_model lists the same model twice")
    rel = data.get("base_model_relation")
    if rel is None:
        return CardLineage(tuple(models), DEFAULT_RELATION, False)
    if not isinstance(rel, str) or rel not in FROM_HF:
        raise InvalidInputError(f"model card: base_model_relation {rel!r} is not one of {', '.join(FROM_HF)}")
    if not models:
        raise InvalidInputError("model card: base_model_relation is given without base_model")
    return CardLineage(tuple(models), FROM_HF[rel], True)


@dataclass(frozen=True, slots=True)
class CardParent:
    """One parent to write: the Hugging Face id to name it by, our relation, and a note for the comment."""

    base_model: str
    relation: ModelRelation
    note: str = ""  # e.g. "record 3f2a... llama@1 (fine-tune)"; written as a YAML comment


def write_card(parents: Sequence[CardParent]) -> str:
    """The front-matter block (``---`` ... ``---``, newline-terminated) naming ``parents``.

    ``base_model_relation`` is written when every parent's relation has the same Hugging Face
    counterpart; otherwise it is left out (the Hub then infers it) and a comment says why. Values
    are written by ``yaml.safe_dump``, so any text is quoted as YAML needs; notes have line breaks
    and other control characters replaced.
    """
    out = ["---"]
    if parents:
        names = [p.base_model for p in parents]
        value = names[0] if len(names) == 1 else names
        out.append(yaml.safe_dump({"base_model": value}, allow_unicode=False, default_flow_style=False,
                                  width=1 << 16).rstrip("\n"))
        hf = {TO_HF.get(p.relation) for p in parents}
        if len(hf) == 1 and None not in hf:
            out.append(f"base_model_relation: {hf.pop()}")
        else:
            ours = ", ".join(sorted({p.relation.value for p in parents}))
            out.append(f"# base_model_relation left out: our relations ({ours}) have no single Hugging Face one")
        for p in parents:
            if p.note:
                out.append("# " + "".join(c if c >= " " and c != "\x7f" else "?" for c in p.note))
    out.append("---")
    return "\n".join(out) + "\n"
