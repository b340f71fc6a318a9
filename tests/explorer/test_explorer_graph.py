"""The lineage graph: the bounded walk, the layered layout and its SVG (ledger/http/explorer/graph.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from explorer_kit import HOSTILE
from registry_kit import Env, Lab, open_env

from ledger.http.explorer import graph
from ledger.http.explorer.render import render

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def env() -> Iterator[Env]:
    e = open_env()
    yield e
    e.close()


def _ok(env: Env, *subs: object) -> None:
    out = env.registry.register(list(subs))  # type: ignore[arg-type]
    assert all(not isinstance(r, Exception) for r in out), out


def _rows(d: graph.Drawing) -> dict[str, int]:
    return {b.node.name: b.y for b in d.boxes}


def test_merge_diamond_and_shared_dataset_get_one_row_per_generation(env: Env) -> None:
    lab = Lab("lab")
    _ok(env, lab.register())
    ds_sub, ds = lab.dataset("web")
    base_sub, base = lab.checkpoint("base", 1, datasets=((ds.id, "pretraining"),))
    a_sub, a = lab.checkpoint("a", 1, parents=((base.id, "fine-tune"),))
    b_sub, b = lab.checkpoint("b", 1, parents=((base.id, "fine-tune"),), datasets=((ds.id, "fine-tuning"),))
    m_sub, m = lab.checkpoint("m", 1, parents=((a.id, "merge"), (b.id, "merge")))
    _ok(env, ds_sub, base_sub, a_sub, b_sub, m_sub)
    lin = graph.walk(env.registry.reader, env.log.scan_aux, m.id)
    assert {n.name for n in lin.nodes} == {"web", "base", "a", "b", "m"} and not lin.truncated
    assert len(lin.links) == 6
    d = graph.layout(lin)
    y = _rows(d)
    # web is linked straight from b, but drawn above base, which was trained on it: no edge runs in a row.
    assert y["web"] < y["base"] < y["a"] == y["b"] < y["m"]
    assert all(line.y1 < line.y2 for line in d.lines)
    lin = graph.walk(env.registry.reader, env.log.scan_aux, base.id)
    y = _rows(graph.layout(lin))
    assert y["web"] < y["base"] < y["a"] == y["b"] < y["m"]


def test_a_popular_base_model_is_cut_to_the_bounds(env: Env) -> None:
    lab = Lab("lab")
    _ok(env, lab.register())
    base_sub, base = lab.checkpoint("base", 1)
    subs = [base_sub]
    for i in range(graph.MAX_LINKS + 3):
        sub, _ = lab.checkpoint(f"ft-{i}", 1, parents=((base.id, "fine-tune"),))
        subs.append(sub)
    _ok(env, *subs)
    lin = graph.walk(env.registry.reader, env.log.scan_aux, base.id)
    assert lin.truncated
    assert len(lin.nodes) == 1 + graph.MAX_LINKS
    d = graph.layout(lin)
    assert d.truncated and len(d.boxes) == 1 + graph.MAX_LINKS


def test_svg_escapes_names_and_relation_labels() -> None:
    ids = [bytes([i]) * 32 for i in range(3)]
    nodes = (graph.Node(ids[0], 0, -1, "checkpoint", HOSTILE[2], HOSTILE[1]),
             graph.Node(ids[1], 1, 0, "checkpoint", HOSTILE[3], "1"),
             graph.Node(ids[2], 2, 1, "dataset", HOSTILE[0], HOSTILE[4]))
    links = (graph.Link(ids[1], ids[0], "</text><script>alert(4)</script>"), graph.Link(ids[2], ids[1], HOSTILE[3]))
    d = graph.layout(graph.Lineage(ids[1], nodes, links, False))
    doc = str(render("lineage.svg", d=d))
    for s in (*HOSTILE, "<script>alert(4)"):
        assert s not in doc
    root = ET.fromstring(doc)  # one well-formed document: nothing closed the svg early
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    assert len([g for g in root.iter(f"{SVG}g") if "node" in (g.get("class") or "")]) == 3
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert graph.clip("</text><script>alert(4)</script>", graph.LABEL_CHARS) in texts  # as text, not markup
    assert "\\u202eevil\\u202c" in texts
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert any(t.startswith(HOSTILE[2]) for t in titles)


def test_clip() -> None:
    assert graph.clip("abc", 3) == "abc"
    assert graph.clip("abcd", 3) == "ab\u2026"
