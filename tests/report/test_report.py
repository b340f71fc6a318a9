"""The court report: a good bundle's sections and digests, a tampered bundle's first line, hostile strings
escaped, the CLI's exit codes as verify's, and the PDF's text (pdftotext)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from references import require_pdftotext
from report_kit import HOSTILE_MODEL, HOSTILE_SOURCE, HOSTILE_SUMMARY, Story, make_story, tamper_leaf

from client.cli import main
from client.core.bundle import verify_bundle
from client.report.build import failed_report, verified_report
from client.report.evidence import EvidenceError, comparison_view
from client.report.html import render_html
from client.report.pdf import latin, render_pdf
from client.report.recheck import Sources


@pytest.fixture(scope="module")
def story() -> Iterator[Story]:
    s = make_story()
    yield s
    s.env.close()


@pytest.fixture(scope="module")
def hostile() -> Iterator[Story]:
    s = make_story(hostile=True)
    yield s
    s.env.close()


def _court(s: Story, evidence: bool = True):  # type: ignore[no-untyped-def]
    report = verify_bundle(s.bundle, s.env.log_key)
    att = verify_bundle(s.attestation_bundle, s.env.log_key)
    view = comparison_view(att, s.evidence if evidence else None, report, "attestations[0]")
    return verified_report(s.bundle, report, Sources("bundle.json", "log.pub", s.env.log_key), comparisons=(view,))


def _first_lines(html: str) -> tuple[str, str]:
    h1 = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    lead = re.search(r'<p id="lead"[^>]*>(.*?)</p>', html, re.S)
    assert h1 is not None and lead is not None
    assert html.index("<h1") < html.index('id="lead"') < html.index("<section")  # title, then the first paragraph
    return h1.group(1), lead.group(1)


def test_good_bundle_has_every_section_and_every_digest_in_full(story: Story) -> None:
    html = render_html(_court(story))
    title, lead = _first_lines(html)
    assert title.startswith("VERIFIED: model chat-int8 30") and "lab-b" in lead and "index" in lead
    for section in ("claims", "signers", "logged", "lineage", "comparisons", "witnesses", "checks", "records",
                    "appendix"):
        assert f'<section id="{section}">' in html, section
    appendix = html[html.index('<section id="appendix">'):]
    for rec in (story.grandchild, story.child, story.base, story.attestation):
        assert rec.id.hex() in appendix
    for rec in (story.grandchild, story.child, story.base):
        assert f"blake3:{rec.record.statement.manifest.hex()}" in appendix  # type: ignore[union-attr]
    assert "(signer's claim)" in html and story.env.log_key in html
    assert "provenance verify bundle.json --log-key log.pub" in html


def test_lineage_svg_draws_the_path_and_the_claim(story: Story) -> None:
    html = render_html(_court(story))
    svg = html[html.index("<svg"):html.index("</svg>")]
    assert svg.count('<g class="node') == 4  # three checkpoints and the dataset named by base
    assert ">quantization<" in svg and ">fine-tune<" in svg and "trained-on:pretraining" in svg
    assert "descent-test: related" in svg and "stroke-dasharray" in svg


def test_compare_evidence_shows_verdict_p_value_and_shared_tensors(story: Story) -> None:
    html = render_html(_court(story))
    part = html[html.index('<section id="comparisons">'):html.index('<section id="signers">')]
    assert 'id="verdict-0">related<' in part and "3.2e-12" in part
    assert "3 of 4 informative tensors of A, in 3 of 4 layers" in part and "auditor-c" in part
    bare = render_html(_court(story, evidence=False))
    assert "not rechecked" in bare and "p-value 3.2e-12" in bare


def test_evidence_that_is_not_the_signed_one_is_refused(story: Story) -> None:
    report = verify_bundle(story.bundle, story.env.log_key)
    att = verify_bundle(story.attestation_bundle, story.env.log_key)
    with pytest.raises(EvidenceError) as err:
        comparison_view(att, story.evidence + b" ", report, "attestations[0]")
    assert err.value.part == "attestations[0].evidence"
    with pytest.raises(EvidenceError, match="not of an attestation"):
        comparison_view(report, None, report, "attestations[0]")


def test_tampered_bundle_says_not_verified_first_naming_the_part(story: Story) -> None:
    bad = tamper_leaf(story.bundle, 1)
    with pytest.raises(Exception) as err:
        verify_bundle(bad, story.env.log_key)
    court = failed_report(bad, err.value, Sources("bundle.json", "log.pub", story.env.log_key))  # type: ignore[arg-type]
    title, lead = _first_lines(render_html(court))
    assert title.startswith("NOT VERIFIED") and "records[1]" in title
    assert lead.startswith("NOT VERIFIED") and "records[1]" in lead
    assert 'class="failed"' in render_html(court) and "VERIFIED:" not in title.replace("NOT VERIFIED", "")


def test_cli_writes_both_and_exits_as_verify(story: Story, tmp_path: Path) -> None:
    f = story.write(tmp_path)
    html, pdf = tmp_path / "report.html", tmp_path / "report.pdf"
    args = ["report", str(f["bundle"]), "-o", str(html), "--pdf", str(pdf), "--log-key", str(f["log_key"]),
            "--attestation", str(f["attestation"]), "--evidence", str(f["evidence"])]
    assert main(args) == 0
    assert html.read_text().count("<svg") == 1 and pdf.read_bytes().startswith(b"%PDF-")
    commands = html.read_text()  # files named as their receiver will hold them: by name, in one folder
    assert ("provenance verify bundle.json --log-key log.pub" in commands and "b3sum evidence.json" in commands
            and str(tmp_path) not in commands)
    (tmp_path / "bad.json").write_bytes(tamper_leaf(story.bundle, 2))
    bad = ["report", str(tmp_path / "bad.json"), "-o", str(html), "--log-key", str(f["log_key"])]
    assert main(bad) == 1 == main(["verify", str(tmp_path / "bad.json"), "--log-key", str(f["log_key"])])
    assert "NOT VERIFIED" in _first_lines(html.read_text())[0]
    other = tmp_path / "other-evidence.json"
    other.write_bytes(b"{}")
    assert main([*args, "--evidence", str(other)]) == 2  # a file that is nobody's evidence: a usage error


def test_hostile_strings_are_escaped(hostile: Story) -> None:
    html = render_html(_court(hostile))
    for raw in ("<script>", "<img src=x", "</td><script>", "\u202e"):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(&#34;src&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;-chat" in html
    assert "\\u202eevil" in html  # the bidi override shown as its escape, inert
    svg = html[html.index("<svg"):html.index("</svg>")]
    assert "&lt;img src=x" in svg
    assert HOSTILE_MODEL and HOSTILE_SOURCE and HOSTILE_SUMMARY  # the strings the story registered


def test_pdf_text_holds_verdict_names_and_digests(story: Story, tmp_path: Path) -> None:
    pdftotext = require_pdftotext()
    path = tmp_path / "r.pdf"
    path.write_bytes(render_pdf(_court(story)))
    text = subprocess.run([pdftotext, "-raw", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert text.startswith("VERIFIED: model chat-int8 30")
    assert "verdict related" in text and "3.2e-12" in text and "lab-b" in text and "auditor-c" in text
    for rec in (story.grandchild, story.child, story.base, story.attestation):
        assert rec.id.hex() in text
    assert f"blake3:{story.base.record.statement.manifest.hex()}" in text  # type: ignore[union-attr]
    assert "quantization" in text and "fine-tune" in text  # the drawn lineage's labels are text too


def test_pdf_of_a_failed_bundle_and_of_hostile_names(story: Story, hostile: Story, tmp_path: Path) -> None:
    pdftotext = require_pdftotext()
    bad = tamper_leaf(story.bundle, 0)
    with pytest.raises(Exception) as err:
        verify_bundle(bad, story.env.log_key)
    court = failed_report(bad, err.value, Sources("b.json", "log.pub", story.env.log_key))  # type: ignore[arg-type]
    (tmp_path / "bad.pdf").write_bytes(render_pdf(court))
    (tmp_path / "hostile.pdf").write_bytes(render_pdf(_court(hostile)))
    text = subprocess.run([pdftotext, "-raw", str(tmp_path / "bad.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert text.startswith("NOT VERIFIED") and "records[0]" in text.splitlines()[0]
    hostile_text = subprocess.run([pdftotext, "-raw", str(tmp_path / "hostile.pdf"), "-"], capture_output=True,
                                  text=True, check=True).stdout
    assert "\\u202eevil" in hostile_text and "\u202e" not in hostile_text


def test_latin_escapes_what_the_core_fonts_cannot_hold() -> None:
    assert latin("Zürich — 模型 \U0001f600") == "Zürich - \\u6a21\\u578b \\U0001f600"


def test_tlog_proof_reports_and_needs_its_entry_as_verify_does(story: Story, tmp_path: Path) -> None:
    from client.core.bundle import format_tlog_proof, parse
    from client.core.bundle.tlog_proof import TlogProof

    f = story.write(tmp_path)
    r = parse(story.bundle).records[0]
    note = parse(story.bundle).checkpoint
    (tmp_path / "p.txt").write_bytes(format_tlog_proof(TlogProof(r.leaf, r.index, r.inclusion_proof, note)))
    html = tmp_path / "p.html"
    assert main(["report", str(tmp_path / "p.txt"), "-o", str(html), "--log-key", str(f["log_key"])]) == 0
    text = html.read_text()
    assert _first_lines(text)[0].startswith("VERIFIED") and r.inclusion_proof[0].hex() in text
    assert "Not proved: this form carries no identity records" in text
    (tmp_path / "bare.txt").write_bytes(format_tlog_proof(TlogProof(None, r.index, r.inclusion_proof, note)))
    bare = ["report", str(tmp_path / "bare.txt"), "-o", str(html), "--log-key", str(f["log_key"])]
    assert main(bare) == 2 == main(["verify", str(tmp_path / "bare.txt"), "--log-key", str(f["log_key"])])


def test_a_long_lineage_is_drawn_on_one_pdf_page() -> None:
    from fpdf import FPDF

    from client.report.layout import NodeSpec, SideLink, layout
    from client.report.pdf import draw_graph

    path = [NodeSpec(f"{i:064x}", f"model m {i}", f"index {i}", True) for i in range(60)]
    sides = [SideLink(a.key, b, "fine-tune") for a, b in zip(path, path[1:], strict=False)]
    g = layout(path, sides, [])
    assert len(g.nodes) == 60 and len(g.edges) == 59 and g.height > 6000
    pdf = FPDF()
    pdf.add_page()
    pdf.set_y(200)  # not enough room left: a new page, then all of it on that page
    draw_graph(pdf, g)
    assert pdf.page_no() == 2 and pdf.get_y() <= pdf.h - 10


def test_an_oms_signature_rechecked_by_verify_is_a_check_of_the_report(story: Story) -> None:
    report = verify_bundle(story.bundle, story.env.log_key)
    report.oms_notes.append("ab12: DSSE signature by <key-1> over 3 files verifies")  # as verify_parsed writes them
    court = verified_report(story.bundle, report, Sources("bundle.json", "log.pub", story.env.log_key))
    assert [c.what for c in court.checks if "OpenSSF Model Signing" in c.what] == [
        "An OpenSSF Model Signing signature carried in a signed attestation verifies: ab12: DSSE signature by "
        "<key-1> over 3 files verifies."]
    assert "&lt;key-1&gt;" in render_html(court)


def test_a_tampered_attachment_makes_the_report_not_verified_naming_it(story: Story, tmp_path: Path) -> None:
    f = story.write(tmp_path)
    f["attestation"].write_bytes(tamper_leaf(story.attestation_bundle, 0))
    html = tmp_path / "r.html"
    assert main(["report", str(f["bundle"]), "--log-key", str(f["log_key"]), "-o", str(html),
                 "--attestation", str(f["attestation"])]) == 1
    title, lead = _first_lines(html.read_text())
    assert title.startswith("NOT VERIFIED") and "attestations[0].records[0]" in title
    assert lead.count("attestations[0].records[0]") == 1
