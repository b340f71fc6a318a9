"""The court report as a PDF: the same model as the HTML, drawn with fpdf2 (pure Python, no browser).

Text is real PDF text in the standard Helvetica and Courier fonts, so it is searchable and
copyable (``pdftotext`` finds the verdict, names and digests). Those fonts hold Latin-1 only: any
other character is written as its escape (``\\u4e2d``), the way :func:`safe_text` writes controls,
so nothing is dropped or replaced by a look-alike; the HTML shows such names as written. The lineage
is drawn from the same layout as the SVG (:mod:`client.report.layout`). Output is bytes; the caller writes them.
"""

from __future__ import annotations

import datetime
import math

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from client.report.model import CourtReport, Fact, Graph

PAGE_W = 190.0  # mm of text width on A4 with 10 mm margins
_ASCII_FOR = {"\u2014": "-", "\u2013": "-", "\u2026": "...", "\u2018": "'", "\u2019": "'", "\u201c": '"',
              "\u201d": '"', "\u2192": "->"}


def latin(text: str) -> str:
    """``text`` in the core fonts' Latin-1: a few punctuation marks spelled in ASCII, every other
    character outside Latin-1 as a ``\\uXXXX`` / ``\\UXXXXXXXX`` escape."""
    out = []
    for ch in text:
        n = ord(ch)
        if n < 0x100:
            out.append(ch)
        elif ch in _ASCII_FOR:
            out.append(_ASCII_FOR[ch])
        else:
            out.append(f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}")
    return "".join(out)


class _Doc(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(format="A4")
        self._footer_title = latin(title)[:90]
        self.set_margins(10, 12, 10)
        self.set_auto_page_break(True, 14)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font("Helvetica", "", 7)
        self.set_text_color(90, 90, 90)
        self.cell(0, 4, f"{self._footer_title}  -  page {self.page_no()}/{{nb}}", align="C")


def _para(pdf: FPDF, text: str, size: float = 9.5, style: str = "", mono: bool = False, h: float = 4.6) -> None:
    pdf.set_font("Courier" if mono else "Helvetica", style, size)
    pdf.multi_cell(0, h, latin(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")


def _heading(pdf: FPDF, text: str) -> None:
    if pdf.get_y() > pdf.h - 40:
        pdf.add_page()
    pdf.ln(3)
    pdf.set_text_color(0, 0, 0)
    _para(pdf, text, 12.5, "B", h=6.5)
    pdf.set_draw_color(180, 180, 180)
    pdf.line(10, pdf.get_y(), 10 + PAGE_W, pdf.get_y())
    pdf.ln(1.5)


def _facts(pdf: FPDF, facts: tuple[Fact, ...] | list[Fact], label_w: float = 48) -> None:
    """Two columns, label and value; a row is kept on one page (a new page first when it does not fit)."""
    for f in facts:
        label, value = latin(f.label), latin(f.value)
        pdf.set_font("Helvetica", "B", 8)
        h_label = float(pdf.multi_cell(label_w, 3.9, label, dry_run=True, output="HEIGHT"))  # type: ignore[arg-type]
        pdf.set_font("Courier" if f.mono else "Helvetica", "", 7.5 if f.mono else 8.5)
        h_value = float(pdf.multi_cell(PAGE_W - label_w, 3.9, value, dry_run=True,  # type: ignore[arg-type]
                                       output="HEIGHT"))
        if pdf.get_y() + max(h_label, h_value) > pdf.page_break_trigger:
            pdf.add_page()
        y = pdf.get_y()
        pdf.set_font("Helvetica", "B", 8)
        pdf.set_xy(10, y)
        pdf.multi_cell(label_w, 3.9, label, new_x=XPos.RIGHT, new_y=YPos.TOP, align="L")
        pdf.set_xy(10 + label_w, y)
        pdf.set_font("Courier" if f.mono else "Helvetica", "", 7.5 if f.mono else 8.5)
        pdf.multi_cell(PAGE_W - label_w, 3.9, value, new_x=XPos.LMARGIN, new_y=YPos.TOP, align="L")
        pdf.set_xy(10, y + max(h_label, h_value) + 0.6)


def _arrowhead(pdf: FPDF, a: tuple[float, float], b: tuple[float, float], size: float) -> None:
    angle = math.atan2(b[1] - a[1], b[0] - a[0])
    left = (b[0] - size * math.cos(angle - 0.45), b[1] - size * math.sin(angle - 0.45))
    right = (b[0] - size * math.cos(angle + 0.45), b[1] - size * math.sin(angle + 0.45))
    pdf.polygon([b, left, right], style="F")


def draw_graph(pdf: FPDF, g: Graph) -> None:
    """Draw ``g`` at the current position, scaled to the text width and to one page's height (a new page
    first if it does not fit below): a long lineage is drawn smaller, never cut across pages."""
    s = min(0.3, PAGE_W / g.width, (pdf.h - 30) / g.height)  # mm per layout unit
    if pdf.get_y() + g.height * s > pdf.h - 16:
        pdf.add_page()
    ox, oy = 10.0, pdf.get_y() + 1

    def at(x: float, y: float) -> tuple[float, float]:
        return ox + x * s, oy + y * s

    pdf.set_line_width(0.3)
    for e in g.edges:
        pts = [at(x, y) for x, y in e.points]
        pdf.set_draw_color(50, 50, 50)
        pdf.set_fill_color(50, 50, 50)
        if e.dashed:
            pdf.set_dash_pattern(1.6, 1.2)
        pdf.polyline(pts)
        pdf.set_dash_pattern()
        _arrowhead(pdf, pts[-2], pts[-1], 2.0)
        pdf.set_font("Helvetica", "", 7)
        pdf.set_text_color(26, 79, 138)
        pdf.text(*at(*e.label_at), latin(e.label))
    for n in g.nodes:
        x, y = at(n.x, n.y)
        fill = (255, 244, 214) if n.subject else (255, 255, 255) if n.in_bundle else (242, 242, 242)
        pdf.set_fill_color(*fill)
        pdf.set_draw_color(40, 40, 40)
        pdf.set_line_width(0.6 if n.subject else 0.3)
        if not n.in_bundle:
            pdf.set_dash_pattern(1.2, 0.9)
        pdf.rect(x, y, g.node_width * s, g.node_height * s, style="DF", round_corners=True, corner_radius=1.5)
        pdf.set_dash_pattern()
        pdf.set_text_color(10, 10, 10)
        pdf.set_font("Helvetica", "B", 7.5)
        pdf.text(x + 2.5, y + 20 * s, latin(n.title))
        pdf.set_font("Helvetica", "", 6.5)
        pdf.set_text_color(80, 80, 80)
        pdf.text(x + 2.5, y + 38 * s, latin(n.subtitle))
    pdf.set_line_width(0.2)
    pdf.set_text_color(0, 0, 0)
    pdf.set_y(oy + g.height * s + 2)


def _comparisons(pdf: FPDF, r: CourtReport) -> None:
    _heading(pdf, "Compare evidence")
    for c in r.comparisons:
        _para(pdf, f"Attestation {c.claim} at log index {c.index}", 10.5, "B")
        _para(pdf, f"By {c.attester}, about {c.subject} (A) and {c.object} (B). Time stated by the attester: "
                   f"{c.signer_time} (signer's claim).")
        if c.evidence_checked:
            _facts(pdf, [Fact("verdict", c.verdict or "(none stated)"),
                         Fact("p-value", (c.p_value or "(none stated)")
                              + (f" (significance level {c.alpha})" if c.alpha else "")),
                         Fact("basis", c.basis or "(none stated)"),
                         Fact("shared tensors", c.shared_tensors or "(none shared)"),
                         Fact("shared parameters", c.shared_fraction or "(not stated)")])
            rows = [Fact(f"layer {row.layer}", f"{'shared' if row.shared else 'not shared'}: {row.tensors} tensors; "
                                                f"B layers {row.b_layers}") for row in c.layers]
            _facts(pdf, rows)
            _para(pdf, f"Read from the evidence file whose BLAKE3 digest the attestation signs ({c.evidence_digest}).",
                  8.5)
        else:
            _para(pdf, f"Verdict as the attester summarises it: {c.summary or '(no summary)'}", 10, "B")
            _para(pdf, "The evidence file was not supplied: this is the attester's signed summary, not rechecked.", 8.5)
        pdf.ln(1)


def render_pdf(r: CourtReport, *, when: datetime.datetime | None = None) -> bytes:
    """The PDF bytes of ``r``; ``when`` is the document's creation date (default: now)."""
    pdf = _Doc(r.title)
    pdf.set_title(latin(r.title))
    pdf.set_creation_date(when or datetime.datetime.now(datetime.UTC))
    pdf.add_page()
    pdf.set_text_color(27, 94, 32) if r.verified else pdf.set_text_color(150, 0, 0)
    _para(pdf, r.title, 16, "B", h=8)
    pdf.set_text_color(0, 0, 0)
    _para(pdf, r.lead, 10.5, h=5.2)
    pdf.ln(1)
    _para(pdf, f"Bundle {r.bundle_name}, SHA-256 {r.bundle_sha256}. Log {r.origin}"
               + (f", checkpoint of {r.tree_size} entries." if r.tree_size is not None else "."), 8.5)
    if r.warnings:
        _heading(pdf, "Warnings")
        for w in r.warnings:
            _para(pdf, f"- {w}", 9)
    _heading(pdf, "What was claimed" if r.verified else "What the bundle states (NOT verified)")
    for c in r.claims or ("Nothing can be read from this bundle.",):
        _para(pdf, f"- {c}", 9)
    if r.lineage is not None:
        _heading(pdf, "The lineage")
        _para(pdf, "Arrows point from a record to the record it descends from. Solid: hash links checked; dashed: "
                   "records named but not in the bundle, or an attestation's claim.", 8.5)
        draw_graph(pdf, r.lineage)
    if r.comparisons:
        _comparisons(pdf, r)
    if r.verified:
        _heading(pdf, "By whom")
        for s in r.signers:
            _para(pdf, f"Identity {s.name}", 10, "B")
            _facts(pdf, [Fact(f"index {e.index}: {e.event}", e.key, True) for e in s.events])
        _para(pdf, f"Key status. {r.key_status}", 9)
    _heading(pdf, "When it was logged" if r.verified else "Where the bundle says it was logged (NOT verified)")
    _para(pdf, "The log's order is what the indexes prove; times are each signer's own claim, not checked by the log.",
          8.5)
    _facts(pdf, [Fact(f"index {v.index}: {v.title}", f"{v.role}; signed by {v.signer_name or 'key'} {v.signer_key}; "
                                                     f"time stated by the signer {v.signer_time} (signer's claim)")
                 for v in r.records])
    if r.tree_size is not None:
        _para(pdf, f"All are proved included in the checkpoint of {r.tree_size} entries, root {r.root}.", 9)
    _heading(pdf, "Witnesses")
    _para(pdf, r.witness_summary, 9)
    _facts(pdf, [Fact(f"{w.name}: {w.status}", f"{w.note} (key {w.key})") for w in r.witnesses])
    _heading(pdf, "What was checked, and how anyone can recheck it")
    for i, check in enumerate(r.checks, 1):
        _para(pdf, f"{i}. {check.what}", 9)
        _para(pdf, f"   How to recheck: {check.how}", 8.5, "I")
    _para(pdf, "The commands (no network needed):", 9, "B")
    for cmd in r.commands:
        _para(pdf, cmd, 7.5, mono=True, h=3.8)
    _para(pdf, "The log's public key:", 9, "B")
    _para(pdf, r.log_key, 7.5, mono=True, h=3.8)
    if r.checkpoint_note:
        _para(pdf, "The checkpoint note" + (" with the signature lines that verified" if r.verified else
                                            ", verbatim (NOT verified)") + ":", 9, "B")
        _para(pdf, r.checkpoint_note, 7.5, mono=True, h=3.8)
    _heading(pdf, "The records in detail")
    for v in r.records:
        _para(pdf, f"records[{v.position}]: {v.title} ({v.role}, log index {v.index})", 10, "B")
        _para(pdf, v.sentence, 8.5)
        _facts(pdf, [Fact("record id", v.record_id, True), Fact("signer", f"{v.signer_name or ''} {v.signer_key}"),
                     Fact("time stated by the signer", f"{v.signer_time} (signer's claim)"), *v.fields])
    _heading(pdf, "Appendix: every digest in full")
    _facts(pdf, r.digests, label_w=62)
    return bytes(pdf.output())
