"""The lineage graph of one record: a bounded walk of the registry, and a small layered layout.

:func:`walk` reads ancestors (stated parents and training datasets) up to :data:`UP_DEPTH` links
and descendants (the registry's child postings) down to :data:`DOWN_DEPTH`, reading at most
:data:`MAX_LINKS` links per record and :data:`MAX_NODES` records in all, so a page about a base
model with ten thousand fine-tunes costs the same as any other (``truncated`` says links were left
out). :class:`RegistryReader`'s own walks read every child, hence this bounded one.

:func:`layout` is pure: rows by generation (ancestors above, each at its longest distance from the
record, descendants below), each row ordered by a few barycentre sweeps to limit crossings, then
boxes and edge lines in SVG user units. What is drawn is text the signer chose: the SVG template
prints it through the explorer's autoescaping environment (:mod:`ledger.http.explorer.render`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from client.core.records import Dataset, ModelCheckpoint, SignedRecord
from ledger.registry import keys as K
from ledger.registry import postings
from ledger.registry.queries import LoggedRecord, RegistryReader, parent_edges

UP_DEPTH = 6
DOWN_DEPTH = 3
MAX_LINKS = 12  # links read per record and direction
MAX_NODES = 40

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 180, 46, 30, 64, 16
TITLE_CHARS, SUBTITLE_CHARS, LABEL_CHARS = 24, 28, 26

Scan = Callable[[bytes, int | None], list[tuple[bytes, bytes]]]


@dataclass(frozen=True, slots=True)
class Node:
    """One record in the graph: ``level`` < 0 for ancestors, 0 for the record asked about, > 0 below."""

    rid: bytes
    index: int
    level: int
    kind: str
    name: str
    version: str

    @property
    def hex(self) -> str:
        return self.rid.hex()


@dataclass(frozen=True, slots=True)
class Link:
    """``child`` derives from (or was trained on) ``parent`` as ``relation``."""

    child: bytes
    parent: bytes
    relation: str


@dataclass(frozen=True, slots=True)
class Lineage:
    focus: bytes
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    truncated: bool


def _naming(signed: SignedRecord) -> tuple[str, str]:
    s = signed.record.statement
    if isinstance(s, ModelCheckpoint):
        return s.model, s.version
    if isinstance(s, Dataset):
        return s.name, s.version
    return s.KIND.label, ""


def walk(reader: RegistryReader, scan: Scan, rid: bytes) -> Lineage:
    """The bounded lineage of record ``rid`` (raises NotFoundError when it is not registered)."""
    start = reader.by_id(rid)
    recs: dict[bytes, LoggedRecord] = {start.id: start}
    level: dict[bytes, int] = {start.id: 0}
    links: dict[tuple[bytes, bytes, str], None] = {}
    truncated = False

    frontier = [start]
    for depth in range(1, UP_DEPTH + 1):
        nxt: list[LoggedRecord] = []
        for rec in frontier:
            stated = parent_edges(rec.signed)
            truncated |= len(stated) > MAX_LINKS
            shown = stated[:MAX_LINKS]
            for parent, (_, rel) in zip(reader.by_ids([pid for pid, _ in shown]), shown, strict=True):
                if parent.id not in recs:
                    if len(recs) >= MAX_NODES:
                        truncated = True
                        continue
                    recs[parent.id] = parent
                    level[parent.id] = -depth
                    nxt.append(parent)
                links[(rec.id, parent.id, rel)] = None
        frontier = nxt

    frontier = [start]
    for depth in range(1, DOWN_DEPTH + 1):
        nxt = []
        for rec in frontier:
            children = postings.read_labelled(scan, K.CHILD_POSTS + rec.id, MAX_LINKS + 1)
            truncated |= len(children) > MAX_LINKS
            for i, label in children[:MAX_LINKS]:
                child = reader.at(i)
                if child.id not in recs:
                    if len(recs) >= MAX_NODES:
                        truncated = True
                        continue
                    recs[child.id] = child
                    level[child.id] = depth
                    nxt.append(child)
                links[(child.id, rec.id, label.decode("utf-8", "replace"))] = None
        frontier = nxt

    _spread(level, list(links))
    nodes = tuple(Node(r.id, r.index, level[r.id], r.signed.record.kind.label, *_naming(r.signed))
                  for r in recs.values())
    return Lineage(start.id, nodes, tuple(Link(c, p, rel) for c, p, rel in links), truncated)


def _spread(level: dict[bytes, int], links: Sequence[tuple[bytes, bytes, str]]) -> None:
    """Move each ancestor above all its drawn children and each descendant below all its drawn parents
    (longest distance), so no edge runs within a row. Terminates: lineage is acyclic (a record
    names only earlier ones)."""
    for _ in range(len(level)):
        moved = False
        for child, parent, _rel in links:
            if level[child] <= 0 and level[parent] >= level[child]:
                level[parent] = level[child] - 1
                moved = True
            elif level[parent] >= 0 and level[child] <= level[parent]:
                level[child] = level[parent] + 1
                moved = True
        if not moved:
            return


@dataclass(frozen=True, slots=True)
class Box:
    node: Node
    x: int
    y: int
    title: str
    subtitle: str
    focus: bool


@dataclass(frozen=True, slots=True)
class Line:
    x1: int
    y1: int
    x2: int
    y2: int
    label: str
    lx: int
    ly: int


@dataclass(frozen=True, slots=True)
class Drawing:
    width: int
    height: int
    boxes: tuple[Box, ...]
    lines: tuple[Line, ...]
    truncated: bool


def clip(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters, the cut shown by an ellipsis."""
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def layout(lineage: Lineage) -> Drawing:
    """Boxes and lines for ``lineage``: one row per level, rows ordered to limit crossings."""
    rows: dict[int, list[Node]] = {}
    for n in sorted(lineage.nodes, key=lambda n: n.index):
        rows.setdefault(n.level, []).append(n)
    levels = sorted(rows)
    nbrs: dict[bytes, list[bytes]] = {n.rid: [] for n in lineage.nodes}
    for link in lineage.links:
        nbrs[link.child].append(link.parent)
        nbrs[link.parent].append(link.child)
    pos = {n.rid: float(i) for row in rows.values() for i, n in enumerate(row)}
    for sweep in (levels[1:], levels[-2::-1], levels[1:]):
        for lv in sweep:
            row = rows[lv]

            def centre(n: Node) -> float:
                near = [pos[m] for m in nbrs[n.rid] if m in pos]
                return sum(near) / len(near) if near else pos[n.rid]

            row.sort(key=lambda n: (centre(n), n.index))
            for i, n in enumerate(row):
                pos[n.rid] = float(i)
    widest = max(len(r) for r in rows.values())
    width = 2 * MARGIN + widest * BOX_W + (widest - 1) * GAP_X
    height = 2 * MARGIN + len(levels) * BOX_H + (len(levels) - 1) * GAP_Y
    at: dict[bytes, tuple[int, int]] = {}
    boxes: list[Box] = []
    for r, lv in enumerate(levels):
        row = rows[lv]
        offset = MARGIN + (width - 2 * MARGIN - (len(row) * BOX_W + (len(row) - 1) * GAP_X)) // 2
        y = MARGIN + r * (BOX_H + GAP_Y)
        for i, n in enumerate(row):
            x = offset + i * (BOX_W + GAP_X)
            at[n.rid] = (x, y)
            sub = f"{n.kind} {n.version}".strip() + f" #{n.index}"
            boxes.append(Box(n, x, y, clip(n.name, TITLE_CHARS), clip(sub, SUBTITLE_CHARS), n.rid == lineage.focus))
    lines = []
    for link in lineage.links:
        (px, py), (cx, cy) = at[link.parent], at[link.child]
        x1, y1, x2, y2 = px + BOX_W // 2, py + BOX_H, cx + BOX_W // 2, cy
        lines.append(Line(x1, y1, x2, y2, clip(link.relation, LABEL_CHARS), (x1 + x2) // 2, (y1 + y2) // 2 + 4))
    return Drawing(width, height, tuple(boxes), tuple(lines), lineage.truncated)
