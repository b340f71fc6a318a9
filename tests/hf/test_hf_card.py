"""Hugging Face model cards: base_model / base_model_relation read from the YAML header, written back; hostile YAML."""

from __future__ import annotations

import pytest

from client.core.records import ModelRelation
from client.core.records.hf_card import (
    MAX_DEPTH,
    MAX_FRONT_MATTER,
    CardParent,
    front_matter,
    read_card,
    write_card,
)
from client.errors import FormatError, InvalidInputError

CARD = """---
license: apache-2.0
base_model: meta-llama/Llama-3.1-8B
base_model_relation: adapter
tags: [lora]
---
# My adapter
"""


def test_single_base_model_and_relation() -> None:
    got = read_card(CARD)
    assert got.base_models == ("meta-llama/Llama-3.1-8B",)
    assert got.relation is ModelRelation.ADAPTER and got.relation_stated


@pytest.mark.parametrize(("hf", "ours"), [("adapter", ModelRelation.ADAPTER), ("merge", ModelRelation.MERGE),
                                          ("quantized", ModelRelation.QUANTIZATION),
                                          ("finetune", ModelRelation.FINE_TUNE)])
def test_every_hf_relation_maps_to_ours(hf: str, ours: ModelRelation) -> None:
    assert read_card(f"---\nbase_model: [a/b, c/d]\nbase_model_relation: {hf}\n---\n").relation is ours


def test_list_of_base_models_without_relation_is_other() -> None:
    got = read_card("---\nbase_model:\n  - a/b\n  - c/d\n---\n")
    assert got.base_models == ("a/b", "c/d") and got.relation is ModelRelation.OTHER and not got.relation_stated


def test_cards_without_front_matter_or_base_model_name_nothing() -> None:
    assert read_card("# just a readme\n").base_models == ()
    assert read_card("---\nlicense: mit\n---\n").base_models == ()
    assert read_card("\ufeff---\r\nbase_model: x/y\r\n---\r\n").base_models == ("x/y",)


@pytest.mark.parametrize(("header", "match"), [
    ("base_model: 5", "string or a list"),
    ("base_model: [a, {b: c}]", "string or a list"),
    ("base_model: [a, a]", "twice"),
    ("base_model: ''", "empty"),
    ("base_model: a\nbase_model_relation: distilled", "not one of"),
    ("base_model_relation: adapter", "without base_model"),
])
def test_values_of_the_wrong_shape_are_refused(header: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        read_card(f"---\n{header}\n---\n")


def test_alias_bomb_is_refused_before_anything_is_built() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    with pytest.raises(FormatError, match="anchors or aliases"):
        read_card("---\n" + "\n".join(lines) + "\nbase_model: x\n---\n")


def test_a_single_anchor_is_refused_too() -> None:
    with pytest.raises(FormatError, match="anchors or aliases"):
        read_card("---\nbase_model: &b x/y\n---\n")


def test_deep_nesting_is_refused() -> None:
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    with pytest.raises(FormatError, match="levels deep"):
        read_card(f"---\nx: {deep}\nbase_model: a\n---\n")
    very_deep = "[" * 100_000  # not even well-formed: refused at the depth bound, no recursion
    with pytest.raises(FormatError):
        read_card(f"---\nx: {very_deep}\n---\n")


def test_huge_or_unclosed_front_matter_is_refused() -> None:
    with pytest.raises(FormatError, match="more than"):
        front_matter("---\n" + ("k: v\n" * (MAX_FRONT_MATTER // 4)) + "---\n")
    with pytest.raises(FormatError, match="never closed"):
        front_matter("---\nbase_model: a\n")


def test_python_tags_are_not_constructed() -> None:
    with pytest.raises(FormatError):
        read_card("---\nbase_model: !!python/object/apply:os.system ['true']\n---\n")


def test_non_mapping_front_matter_is_refused() -> None:
    with pytest.raises(FormatError, match="not a mapping"):
        read_card("---\n- a\n- b\n---\n")


def test_written_block_reads_back() -> None:
    text = write_card([CardParent("org/base", ModelRelation.FINE_TUNE, "record ab12 org/base@1 (fine-tune)")])
    assert text.startswith("---\n") and text.endswith("---\n")
    got = read_card(text)
    assert got.base_models == ("org/base",) and got.relation is ModelRelation.FINE_TUNE


def test_mixed_or_unmapped_relations_leave_the_relation_out() -> None:
    text = write_card([CardParent("a", ModelRelation.MERGE), CardParent("b", ModelRelation.DISTILLATION)])
    assert "base_model_relation:" not in text.replace("# base_model_relation", "")
    assert read_card(text).base_models == ("a", "b")


def test_hostile_names_are_quoted_and_notes_stay_on_one_line() -> None:
    name = "x: y # --- [evil]"  # YAML syntax in a name (records refuse line breaks in names)
    text = write_card([CardParent(name, ModelRelation.ADAPTER, "note\n---\nbase_model: evil")])
    assert text.count("\n---\n") == 1  # only the closing line
    assert read_card(text).base_models == (name,)
