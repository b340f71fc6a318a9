"""The lineage drawing placed on a grid: one layout that the SVG and the PDF both draw. Pure.

The lineage path runs down the first column, the subject at the top and each parent one row below
its child (arrows point from a record to the record it descends from). Other parents and datasets
a path record names sit beside its parent, in the row below; past :data:`MAX_SIDE` in a row they are
summed up in one box. An attestation between two drawn records is a dashed arrow routed along the
right-hand side. Titles longer than :data:`MAX_TITLE` characters are cut with an ellipsis (the
report's text gives them in full).
"""

from __future__ import annotations

from dataclasses import dataclass

from client.report.model import Graph, GraphEdge, GraphNode

NODE_W, NODE_H = 250, 48
COL_GAP, ROW_GAP = 40, 64
MARGIN = 16
SIDE_LANE = 28  # extra width per attestation arrow routed on the right
MAX_SIDE = 3  # side boxes per row before the rest are summed up
MAX_TITLE = 36


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A record to draw: ``key`` its id (hex)."""

    key: str
    title: str
    subtitle: str
    in_bundle: bool


@dataclass(frozen=True, slots=True)
class SideLink:
    """``parent`` (not the next record of the path) named by path record ``child`` with ``label``."""

    child: str
    parent: NodeSpec
    label: str


@dataclass(frozen=True, slots=True)
class Claimed:
    """A dashed arrow from ``subject`` to ``object`` (an attestation's claim), drawn when both are in the graph."""

    subject: str
    object: str
    label: str


def cut(text: str, limit: int = MAX_TITLE) -> str:
    """``text`` shortened to ``limit`` characters with a trailing ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _box(spec: NodeSpec, row: int, col: int, subject: bool) -> GraphNode:
    x = MARGIN + col * (NODE_W + COL_GAP)
    y = MARGIN + row * (NODE_H + ROW_GAP)
    return GraphNode(spec.key, cut(spec.title), cut(spec.subtitle, 44), x, y, spec.in_bundle, subject)


def _arrow(child: GraphNode, parent: GraphNode, label: str, dashed: bool) -> GraphEdge:
    start = (child.x + NODE_W // 2, child.y + NODE_H)
    end = (parent.x + NODE_W // 2, parent.y)
    mid = ((start[0] + end[0]) // 2 + 8, (start[1] + end[1]) // 2 + 4)
    return GraphEdge(cut(label, 40), (start, end), mid, dashed)


def layout(path: list[NodeSpec], sides: list[SideLink], claims: list[Claimed]) -> Graph:
    """Place ``path`` (subject first, then each record's parent on the path) with ``sides`` and ``claims``.

    Requires a non-empty ``path`` of distinct keys. The path's own links come in ``sides`` too: a
    parent already drawn is linked, not drawn again (solid when its record is in the bundle).
    """
    nodes: dict[str, GraphNode] = {}
    edges: list[GraphEdge] = []
    for row, spec in enumerate(path):
        nodes[spec.key] = _box(spec, row, 0, row == 0)
    row_of = {spec.key: row for row, spec in enumerate(path)}
    per_row: dict[int, int] = {}
    hidden: dict[int, tuple[str, int]] = {}
    for link in sides:
        if link.child not in nodes:
            continue
        row = row_of[link.child] + 1
        if link.parent.key in nodes:
            edges.append(_arrow(nodes[link.child], nodes[link.parent.key], link.label, not link.parent.in_bundle))
            continue
        col = per_row.get(row, 0) + 1
        if col > MAX_SIDE:
            child, count = hidden.get(row, (link.child, 0))
            hidden[row] = (child, count + 1)
            continue
        per_row[row] = col
        nodes[link.parent.key] = _box(link.parent, row, col, False)
        edges.append(_arrow(nodes[link.child], nodes[link.parent.key], link.label, not link.parent.in_bundle))
    for row, (child, count) in hidden.items():
        spec = NodeSpec(f"more-{row}", f"{count} more named", "parents or datasets, listed in the text", False)
        per_row[row] = MAX_SIDE + 1
        nodes[spec.key] = _box(spec, row, MAX_SIDE + 1, False)
        edges.append(_arrow(nodes[child], nodes[spec.key], "", True))
    cols = 1 + max(per_row.values(), default=0)
    right = MARGIN + cols * NODE_W + (cols - 1) * COL_GAP
    lanes = 0
    for claim in claims:
        a, b = nodes.get(claim.subject), nodes.get(claim.object)
        if a is None or b is None:
            continue
        lanes += 1
        x = right + lanes * SIDE_LANE
        start, end = (a.x + NODE_W, a.y + NODE_H // 2), (b.x + NODE_W, b.y + NODE_H // 2 + 6)
        pts = (start, (x, start[1]), (x, end[1]), end)
        edges.append(GraphEdge(cut(claim.label, 40), pts, (x + 6, (start[1] + end[1]) // 2), True))
    rows = max(n.y for n in nodes.values()) + NODE_H + MARGIN
    width = right + lanes * SIDE_LANE + (220 if lanes else 0) + MARGIN
    return Graph(width, rows, NODE_W, NODE_H, tuple(nodes.values()), tuple(edges))
