"""The court report: a proof bundle rendered for a reader who is not an engineer (issue 16, docs/report.md).

- :mod:`client.report.model` -- the report as frozen values (pure): what was claimed, by whom, when it
  was logged, what was checked and how to recheck it, the lineage, witnesses, compare evidence, digests.
- :mod:`client.report.build` -- the model built from a verified bundle, or from the verifier's error (pure).
- :mod:`client.report.evidence` -- attached ``descent-test`` attestations and their evidence files (pure).
- :mod:`client.report.layout` -- the lineage graph placed on a grid, shared by the SVG and the PDF (pure).
- :mod:`client.report.html` -- HTML through autoescaped Jinja2 templates (package data in ``templates/``).
- :mod:`client.report.pdf` -- a text-searchable PDF of the same model (fpdf2; no browser needed).

Every signer-chosen string in the model has passed :func:`client.core.records.display.safe_text`
(controls and bidirectional overrides escaped); the HTML templates escape markup on top.
"""
