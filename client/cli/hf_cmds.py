"""Hugging Face lineage in and out (docs/registry.md, "Hugging Face lineage"). Thin.

    provenance register checkpoint PATH ... --model-card README.md [--base-ref HF_ID=REF] [--allow-unregistered-base]
    provenance lineage REF --model-card

In: each ``base_model`` id of the card becomes a ``--parent`` edge with the card's relation mapped to
ours (:mod:`client.core.records.hf_card`). An id resolves, in order, through ``--base-ref HF_ID=REF``,
as a record reference itself (64-hex id, ``@INDEX`` or ``NAME@VERSION``), or else it is an error --
unless ``--allow-unregistered-base``, which records the ids that did not resolve as an unresolved
claim in the checkpoint's signed metadata (``hf.base_model``, ``hf.base_model_relation``), not as
edges. Out: the front-matter block for the record's parent checkpoints and any unresolved claim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from client.errors import InvalidInputError, NotFoundError

MAX_CARD = 1 << 20
META_BASE = "hf.base_model"
META_RELATION = "hf.base_model_relation"


def add_register_flags(p: Any) -> None:
    p.add_argument("--model-card", type=Path, default=None, metavar="README.md",
                   help="read base_model / base_model_relation from a Hugging Face model card's YAML header")
    p.add_argument("--base-ref", action="append", default=[], metavar="HF_ID=REF",
                   help="resolve the card's base model HF_ID to the record REF (id, @INDEX, NAME@VERSION)")
    p.add_argument("--allow-unregistered-base", action="store_true",
                   help="record base models that resolve to no record as an unresolved claim in the metadata")


def _resolve(reg: Any, text: str) -> bytes:
    from client.cli._registry_common import resolve_ref
    from client.core.records import ModelCheckpoint

    rid = resolve_ref(reg, text)
    s = reg.by_id(rid).signed.record.statement
    if not isinstance(s, ModelCheckpoint):
        raise InvalidInputError(f"base model {text!r} is a {s.KIND.label} record, not a checkpoint")
    return bytes(rid)


def card_parents(reg: Any, args: Any) -> tuple[list[tuple[bytes, str]], dict[str, str]]:
    """The ``(parent id, relation)`` edges the card names, and the metadata of any unresolved claim."""
    from client.cli.oms_cmds import read_bounded
    from client.core.records.hf_card import FROM_HF, read_card

    raw = read_bounded(args.model_card, MAX_CARD, "model card")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"model card {str(args.model_card)!r} is not UTF-8") from err
    card = read_card(text)
    refs: dict[str, str] = {}
    for item in args.base_ref:
        hf_id, sep, ref = item.partition("=")
        if not sep or not hf_id or not ref:
            raise InvalidInputError(f"--base-ref {item!r} must be HF_ID=REF")
        refs[hf_id] = ref
    parents: list[tuple[bytes, str]] = []
    unresolved: list[str] = []
    for hf_id in card.base_models:
        try:
            parents.append((_resolve(reg, refs.get(hf_id, hf_id)), card.relation.value))
        except (NotFoundError, InvalidInputError) as err:
            if hf_id in refs or not args.allow_unregistered_base:
                raise NotFoundError(f"model card base_model {hf_id!r} is not a registered checkpoint ({err}); "
                                    f"map it with --base-ref {hf_id}=NAME@VERSION, or record it as an unresolved "
                                    "claim with --allow-unregistered-base") from err
            unresolved.append(hf_id)
    meta: dict[str, str] = {}
    if unresolved:
        meta[META_BASE] = json.dumps(unresolved, ensure_ascii=False)
        if card.relation_stated:
            meta[META_RELATION] = next(k for k, v in FROM_HF.items() if v is card.relation)
    return parents, meta


def card_text(reg: Any, rid: bytes) -> str:
    """The front-matter block naming ``rid``'s parent checkpoints (and its unresolved claim, if any)."""
    from client.core.records import ModelCheckpoint, ModelRelation
    from client.core.records.hf_card import DEFAULT_RELATION, FROM_HF, CardParent, write_card

    s = reg.by_id(rid).signed.record.statement
    if not isinstance(s, ModelCheckpoint):
        raise InvalidInputError(f"--model-card: the record is a {s.KIND.label}, not a checkpoint")
    out: list[CardParent] = []
    for p in s.parents:
        ps = reg.by_id(p.id).signed.record.statement
        assert isinstance(ps, ModelCheckpoint)
        note = f"record {p.id.hex()} {ps.model}@{ps.version} ({p.relation.value})"
        out.append(CardParent(ps.model, p.relation, note))
    meta = dict(s.metadata)
    if META_BASE in meta:
        try:
            claimed = json.loads(meta[META_BASE])
        except ValueError:
            claimed = []
        rel_text = meta.get(META_RELATION, "")
        rel = FROM_HF.get(rel_text, DEFAULT_RELATION) if isinstance(rel_text, str) else ModelRelation.OTHER
        for hf_id in claimed if isinstance(claimed, list) else []:
            if isinstance(hf_id, str):
                out.append(CardParent(hf_id, rel, "unresolved claim in the record's metadata (not a logged edge)"))
    return write_card(out)
