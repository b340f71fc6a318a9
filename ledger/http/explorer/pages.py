"""The explorer's routes: each handler reads what its page shows (bounded) and renders one template.

Pages: ``/`` (search box, the checkpoint, recent records, paged with ``?before=INDEX``),
``/search?q=``, ``/record/<id>`` (with ``/lineage.svg`` and ``/proof.tlog`` beside it),
``/signer/<hex key | ed25519:key | identity name>``, ``/log``, and the static stylesheet and script.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

from client.core.bundle.tlog_proof import TlogProof, extra_fits, format_tlog_proof
from client.errors import InvalidInputError
from ledger.http.explorer import graph, signers, views
from ledger.http.explorer.render import page, render, static, svg
from ledger.http.explorer.search import search
from ledger.http.router import Request, Response, Route
from ledger.http.site import Site

PAGE = 25
_RECORD = r"/record/(?P<id>[0-9a-f]{64})"
_STATIC = {"explorer.css": "text/css; charset=utf-8", "verify.js": "text/javascript; charset=utf-8",
           "favicon.svg": "image/svg+xml"}


@cache
def _static_file(name: str) -> bytes:
    return resources.files("ledger.http.explorer").joinpath("static", name).read_bytes()


class Explorer:
    """The handlers over one site (its log, registry reader and log key)."""

    def __init__(self, site: Site) -> None:
        self.log = site.log
        self.reader = site.registry
        self.verifier_key = site.verifier_key
        self.origin = site.origin
        self.witnessing = site.witnessing

    def _page(self, template: str, **context: Any) -> Response:
        return page(template, origin=self.origin, size=self.log.size, **context)

    def index(self, req: Request, m: re.Match[str]) -> Response:
        size = self.log.size
        before = _int_arg(req, "before", size)
        before = min(before, size)
        records = views.recent(self.reader, size, before, PAGE)
        older = before - PAGE if before > PAGE else None
        newer = min(before + PAGE, size) if before < size else None
        return self._page("index.html", checkpoint=signers.checkpoint(self.log, self.verifier_key),
                          witnessed=signers.witnessed(self.witnessing, self.verifier_key),
                          records=records, older=older, newer=newer)

    def search(self, req: Request, m: re.Match[str]) -> Response:
        return self._page("search.html", results=search(self.reader, self.log, req.arg("q")))

    def record(self, req: Request, m: re.Match[str]) -> Response:
        rec = self.reader.by_id(bytes.fromhex(m["id"]))
        proof = views.proof(self.log, rec)
        claims, more_claims = views.about(self.reader, rec.id)
        digest = views.manifest_of(rec.signed)
        drawing = graph.layout(graph.walk(self.reader, self.log.scan_aux, rec.id))
        return self._page(
            "record.html", rec=views.summarize(self.reader, rec), fields=views.fields(self.reader, rec.signed),
            proof=proof, note_lines=views.lines(proof.note), log_key=self.verifier_key,
            history=signers.history(self.reader, rec.signed.record.signer), claims=claims, more_claims=more_claims,
            manifest=None if digest is None else views.manifest(self.reader, digest),
            lineage=render("lineage.svg", d=drawing), drawing=drawing)

    def lineage_svg(self, req: Request, m: re.Match[str]) -> Response:
        drawing = graph.layout(graph.walk(self.reader, self.log.scan_aux, bytes.fromhex(m["id"])))
        return svg(render("lineage.svg", d=drawing))

    def proof_text(self, req: Request, m: re.Match[str]) -> Response:
        rec = self.reader.by_id(bytes.fromhex(m["id"]))
        cp = self.log.latest()
        hashes = self.log.inclusion_proof(rec.index, cp.checkpoint.size)
        entry = rec.signed.entry if extra_fits(rec.signed.entry) else None
        body = format_tlog_proof(TlogProof(entry, rec.index, tuple(hashes), cp.note))
        disposition = f'attachment; filename="{m["id"]}.tlog"'
        return Response(200, body, "text/plain; charset=utf-8",
                        (("Cache-Control", "no-store"), ("Content-Disposition", disposition)))

    def signer(self, req: Request, m: re.Match[str]) -> Response:
        ref = m["ref"]  # Request.path is already percent-decoded
        key = signers.resolve(self.reader, ref)
        recs = self.reader.by_signer(key, PAGE * 4 + 1)
        cache: dict[bytes, views.SignerView] = {}
        return self._page("signer.html", signer=views.signer_view(self.reader, key),
                          history=signers.history(self.reader, key),
                          records=[views.summarize(self.reader, r, cache) for r in recs[: PAGE * 4]],
                          more=len(recs) > PAGE * 4)

    def log_page(self, req: Request, m: re.Match[str]) -> Response:
        return self._page("log.html", checkpoint=signers.checkpoint(self.log, self.verifier_key),
                          witnessed=signers.witnessed(self.witnessing, self.verifier_key))

    def static_file(self, req: Request, m: re.Match[str]) -> Response:
        return static(_static_file(m["name"]), _STATIC[m["name"]])


def _int_arg(req: Request, name: str, default: int) -> int:
    text = req.arg(name)
    if not text:
        return default
    if not text.isdigit() or len(text) > 19:
        raise InvalidInputError(f"{name} must be a log index")
    return int(text)


def routes(site: Site) -> list[Route]:
    """The explorer's routes over ``site``; none for a bare log (the explorer reads the registry)."""
    if site.registry is None:
        return []
    e = Explorer(site)
    names = "|".join(re.escape(n) for n in _STATIC)
    return [
        Route.of(r"/", e.index),
        Route.of(r"/search", e.search),
        Route.of(_RECORD, e.record),
        Route.of(_RECORD + r"/lineage\.svg", e.lineage_svg),
        Route.of(_RECORD + r"/proof\.tlog", e.proof_text),
        Route.of(r"/signer/(?P<ref>[^?#]{1,600})", e.signer),
        Route.of(r"/log", e.log_page),
        Route.of(rf"/static/(?P<name>{names})", e.static_file),
    ]
