"""Rendering the explorer's pages: one Jinja2 environment, autoescaping every template, and the headers.

Two rules make signer-chosen text inert, whatever template prints it:

- **Autoescape** is on for every template (``autoescape=True``, not by file extension), so
  ``<``, ``>``, ``&``, ``"`` and ``'`` in a name, version, description, identity name or relation
  label are entities, in HTML text, attributes and the SVG alike.
- **Finalize**: every string a ``{{ ... }}`` prints first goes through
  :func:`client.core.records.display.safe_text`, which escapes what HTML escaping leaves alone:
  controls, bidirectional overrides (U+202E) and other invisible characters, shown as ``\\u202e``.

A template never marks a value ``|safe``; the only markup not written in the templates is the
lineage SVG, which is itself rendered from an autoescaped template (:func:`render`) and passed
on as :class:`markupsafe.Markup`.

Every page carries :data:`SECURITY_HEADERS`: a Content-Security-Policy allowing scripts and styles
from this origin's files only (no inline script or style), no framing, no referrer.
"""

from __future__ import annotations

from typing import Any

import jinja2
from markupsafe import Markup

from client.core.records.display import safe_text
from ledger.http.router import Response

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),  # pages follow the log's latest checkpoint
)


def _finalize(value: Any) -> Any:
    if isinstance(value, str) and not isinstance(value, Markup):
        return safe_text(value)
    return value


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("ledger.http.explorer", "templates"),
    autoescape=True,
    finalize=_finalize,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, **context: Any) -> Markup:
    """``template`` rendered with ``context``, as markup (for embedding one rendering in another)."""
    return Markup(_ENV.get_template(template).render(**context))


def page(template: str, status: int = 200, **context: Any) -> Response:
    """An HTML page: ``template`` rendered with ``context``, with the security headers."""
    body = _ENV.get_template(template).render(**context).encode("utf-8")
    return Response(status, body, "text/html; charset=utf-8", SECURITY_HEADERS)


def svg(body: Markup) -> Response:
    """A standalone SVG document, with the same headers (a script inside an SVG could not run either)."""
    doc = '<?xml version="1.0" encoding="UTF-8"?>\n' + str(body)
    return Response(200, doc.encode("utf-8"), "image/svg+xml; charset=utf-8", SECURITY_HEADERS)


def static(body: bytes, content_type: str) -> Response:
    """A static file of the explorer (its stylesheet, its script): cacheable for an hour."""
    headers = tuple(h for h in SECURITY_HEADERS if h[0] != "Cache-Control") + (("Cache-Control", "max-age=3600"),)
    return Response(200, body, content_type, headers)
