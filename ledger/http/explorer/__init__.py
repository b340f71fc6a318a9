"""The read-only web explorer, served by ``provenance serve --http HOST:PORT`` under ``/`` (docs/explorer.md).

Search by name, version, record id, signer and BLAKE3 digest; a page per record with its signed
fields, log index, inclusion proof and checkpoint, its signer's identity history, the attestations
and disputes about it and its lineage drawn as SVG; the checkpoint with its signature lines.
Server-rendered HTML from autoescaped Jinja2 templates (``templates/``), no JavaScript needed; an
optional script (``static/verify.js``) rechecks a record's inclusion proof and the checkpoint
signature in the browser. Modules: ``pages`` (routes and handlers), ``views`` and ``signers``
(what a page shows, read with bounded cost), ``search``, ``graph`` (lineage walk and layout),
``render`` (the Jinja2 environment, escaping and security headers).
"""

from ledger.http.explorer.pages import routes

__all__ = ["routes"]
