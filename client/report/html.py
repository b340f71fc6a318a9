"""The court report as one self-contained HTML page (no script, no external files, prints as is).

Rendered with Jinja2 from the templates kept as package data in ``client/report/templates/``,
autoescaped: every value of the model is HTML-escaped (and was made safe of controls and bidi
overrides when the model was built), so a signer-chosen name cannot add markup, script or style.
"""

from __future__ import annotations

import functools

import jinja2

from client.report.model import CourtReport

TEMPLATE = "report.html.j2"


@functools.cache
def environment() -> jinja2.Environment:
    """The template environment: package templates, autoescape on for every template, undefined names fail."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("client.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(report: CourtReport) -> str:
    """The HTML text of ``report``."""
    return environment().get_template(TEMPLATE).render(r=report)
