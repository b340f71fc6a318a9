"""The explorer's pages through Router.dispatch on an in-process registry (ledger/http/explorer)."""

from __future__ import annotations

import html.parser
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from explorer_kit import HOSTILE, VERDICT_SUMMARY, Story, build
from registry_kit import open_env

from client.core.checkpoint import SignedCheckpoint
from client.core.note import Signer, sign_note
from client.core.records import key_text
from ledger.http.explorer import routes
from ledger.http.router import Request, Router
from ledger.http.site import Site

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def st() -> Iterator[Story]:
    env = open_env()
    yield build(env)
    env.close()


def ok(st: Story, target: str, content_type: str = "text/html; charset=utf-8") -> str:
    resp = st.get(target)
    assert resp.status == 200, (target, resp.status, resp.body[:300])
    assert resp.content_type == content_type
    headers = dict(resp.headers)
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    return resp.body.decode()


class _Tags(html.parser.HTMLParser):
    """Every start tag with its attributes, as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(body: str) -> list[tuple[str, dict[str, str | None]]]:
    p = _Tags()
    p.feed(body)
    return p.tags


def test_index_shows_the_checkpoint_and_recent_records(st: Story) -> None:
    body = ok(st, "/")
    size = st.env.log.size
    assert f"{size} records" in body
    assert st.env.log.latest().checkpoint.root.hex() in body
    assert 'action="/search"' in body
    for name in ("chat-q4", "base", "lab-a", "auditor"):
        assert name in body
    assert f'href="/record/{st.recs["base"].id.hex()}"' in body


def test_index_pages_by_log_index(st: Story) -> None:
    body = ok(st, "/?before=3")
    indices = [int(i) for i in re.findall(r'<td class="num"><a href="/record/[0-9a-f]{64}">(\d+)</a>', body)]
    assert indices == [2, 1, 0]
    assert f'href="/?before={min(3 + 25, st.env.log.size)}">newer' in body
    assert ">older</a>" not in body
    assert st.get("/?before=x").status == 400


def test_record_page_shows_fields_proof_claims_and_history(st: Story) -> None:
    child = st.recs["child"]
    body = ok(st, f"/record/{child.id.hex()}")
    index = st.env.registry.reader.by_id(child.id).index
    assert f'<strong id="log-index">{index}</strong>' in body
    assert "The server checked this proof against the checkpoint below." in body
    assert st.env.log.latest().note.decode().split("\n")[2] in body  # the checkpoint's root line
    assert "Verdict: <strong>related</strong> (statistical)" in body
    assert VERDICT_SUMMARY in body
    assert st.recs["attestation"].record.statement.evidence.text() in body  # type: ignore[union-attr]
    assert "fine-tune" in body and "quantization" in body  # lineage labels
    assert "parent (fine-tune)" in body
    assert key_text(child.record.signer) in body
    assert "<td>register</td>" in body  # the signer's identity history
    assert "blake3:" + child.record.statement.manifest.hex() in body  # type: ignore[union-attr]
    assert "data.bin" in body
    assert [t for t, a in tags(body) if t == "script"] == ["script"]  # only the external verify.js


def test_dispute_is_shown_on_the_disputed_record(st: Story) -> None:
    body = ok(st, f"/record/{st.recs['grandchild'].id.hex()}")
    assert "the quantization is ours<br>second line" in body
    assert 'class="claim claim-dispute"' in body
    assert "lab-c" in body


def test_claim_and_identity_pages_have_no_lineage_or_manifest(st: Story) -> None:
    for key in ("attestation", "dispute"):
        body = ok(st, f"/record/{st.recs[key].id.hex()}")
        assert 'id="lineage"' not in body and 'id="manifest"' not in body and 'id="proof"' in body
    body = ok(st, f"/record/{st.recs['attestation'].id.hex()}")
    assert f'href="/record/{st.recs["child"].id.hex()}">chat (checkpoint 10)' in body  # the subject, named
    assert "<th>claim</th><td>descent-test</td>" in body
    assert 'id="lineage"' in ok(st, f"/record/{st.recs['dataset'].id.hex()}")


def test_lineage_svg_draws_every_node_and_labels_every_edge(st: Story) -> None:
    doc = ok(st, f"/record/{st.recs['child'].id.hex()}/lineage.svg", "image/svg+xml; charset=utf-8")
    root = ET.fromstring(doc)
    nodes = [g for g in root.iter(f"{SVG}g") if "node" in (g.get("class") or "").split()]
    reader = st.env.registry.reader
    want = {st.recs[k].id.hex() for k in ("dataset", "base", "child", "grandchild", "hostile", "odd")}
    assert {g.get("data-id") for g in nodes} == want
    focus = [g for g in nodes if "focus" in (g.get("class") or "")]
    assert [g.get("data-id") for g in focus] == [st.recs["child"].id.hex()]
    edges = [g for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]
    labels = sorted(t.text or "" for g in edges for t in g.iter(f"{SVG}text"))
    assert labels == sorted(["trained-on:pretraining", "fine-tune", "quantization", "merge", "adapter"])
    # Rows: ancestors above the record, descendants below.
    y = {g.get("data-id"): float(g.find(f"{SVG}rect").get("y")) for g in nodes}  # type: ignore[union-attr]
    assert y[st.recs["dataset"].id.hex()] < y[st.recs["base"].id.hex()] < y[st.recs["child"].id.hex()]
    assert y[st.recs["child"].id.hex()] < y[st.recs["grandchild"].id.hex()]
    assert reader.by_id(st.recs["child"].id).index >= 0


def test_proof_download_is_a_tlog_proof_that_verifies(st: Story) -> None:
    from client.core.bundle.tlog_proof import parse_tlog_proof
    from client.core.merkle import leaf_hash, verify_inclusion

    rec = st.recs["base"]
    resp = st.get(f"/record/{rec.id.hex()}/proof.tlog")
    assert resp.status == 200
    p = parse_tlog_proof(resp.body)
    assert p.entry == rec.entry
    cp = SignedCheckpoint.open(p.checkpoint, st.env.log_signer.verifier())
    verify_inclusion(p.index, cp.checkpoint.size, leaf_hash(rec.entry), p.proof, cp.checkpoint.root)


@pytest.mark.parametrize(("query", "finds", "read_as"), [
    ("chat", ["child"], "a checkpoint, dataset or identity name"),
    ("chat@10", ["child"], "name@version"),
    ("web@1", ["dataset"], "name@version"),
    ("base@999", [], "name@version"),
])
def test_search_by_name_and_version(st: Story, query: str, finds: list[str], read_as: str) -> None:
    body = ok(st, f"/search?q={query}")
    found = set(re.findall(r'<a href="/record/([0-9a-f]{64})">\d+</a>', body))
    assert found == {st.recs[k].id.hex() for k in finds}
    assert read_as in body
    if not finds:
        assert "Nothing found." in body


def test_search_by_id_prefix_index_and_digests(st: Story) -> None:
    base = st.recs["base"]
    reader = st.env.registry.reader
    for q in (base.id.hex(), base.id.hex()[:11], base.id.hex()[:12].upper(), f"%23{reader.by_id(base.id).index}"):
        body = ok(st, f"/search?q={q}")
        assert f'href="/record/{base.id.hex()}"' in body, q
    manifest = base.record.statement.manifest  # type: ignore[union-attr]
    body = ok(st, f"/search?q=blake3:{manifest.hex()}")
    assert "manifest digest" in body and f'href="/record/{base.id.hex()}"' in body
    file_digest = re.search(r"q=blake3:([0-9a-f]{64})", ok(st, f"/record/{base.id.hex()}"))
    assert file_digest is not None
    body = ok(st, f"/search?q={file_digest.group(1)}")
    assert "file digest" in body and f'href="/record/{base.id.hex()}"' in body
    assert st.get("/search?q=blake3:abc").status == 400
    assert st.get("/search?q=" + "x" * 700).status == 400


def test_search_by_signer_key_and_identity_name(st: Story) -> None:
    key = st.labs["auditor"].signer.public_key
    body = ok(st, "/search?q=" + key_text(key).replace("+", "%2B"))
    assert "a signer key" in body and f'href="/record/{st.recs["attestation"].id.hex()}"' in body
    body = ok(st, "/search?q=auditor")
    assert f'href="/signer/{key.hex()}">auditor</a>' in body
    assert "Nothing found." in ok(st, "/search?q=no-such-thing")


def test_signer_page_by_key_and_by_name(st: Story) -> None:
    key = st.labs["court"].signer.public_key
    for ref in (key.hex(), "lab-c", key_text(key).replace("+", "%2B").replace("/", "%2F")):
        body = ok(st, f"/signer/{ref}")
        assert "Identity lab-c" in body, ref
        assert "<td>register</td>" in body
        assert f'href="/record/{st.recs["dispute"].id.hex()}"' in body
    assert st.get("/signer/nobody-here").status == 404
    assert st.get("/signer/" + "ab" * 32).status == 200  # an unregistered key: a page saying so
    assert "not registered" in ok(st, "/signer/" + "ab" * 32)


def test_log_page_names_the_log_key_and_lists_cosignatures(st: Story) -> None:
    body = ok(st, "/log")
    assert st.env.log_key in body
    assert "the log's own signature" in body
    assert re.findall(r'<tr class="sig-(\w+)">', body) == ["log"]

    class Cosigned:
        """The same log, its latest note carrying a witness's signature line too."""

        def __init__(self, log: object, note: bytes) -> None:
            self._log, self._note = log, note

        def __getattr__(self, name: str) -> object:
            return getattr(self._log, name)

        def latest(self) -> SignedCheckpoint:
            cp = self._log.latest()  # type: ignore[attr-defined]
            return SignedCheckpoint(cp.checkpoint, self._note)

    text = st.env.log.latest().checkpoint.to_text()
    note = sign_note(text, [st.env.log_signer, Signer.generate("witness.example/w1")])
    site = Site(Cosigned(st.env.log, note), st.env.registry.reader, st.env.log_key, "example.com/registry-test")
    body = Router(routes(site)).dispatch(Request.from_target("GET", "/log")).body.decode()
    rows = re.findall(r'<tr class="sig-(\w+)"><td class="mono">([^<]+)</td>', body)
    assert rows == [("log", "example.com/registry-test"), ("cosignature", "witness.example/w1")]


def test_hostile_text_is_escaped_everywhere(st: Story) -> None:
    pages = [f"/record/{st.recs[k].id.hex()}" for k in ("hostile", "odd", "child", "grandchild", "hostile_att")]
    pages += [f"/record/{st.recs[k].id.hex()}/lineage.svg" for k in ("odd", "child")]
    pages += ["/", "/search?q=" + HOSTILE[2].replace("<", "%3C").replace(">", "%3E").replace("/", "%2F"),
              f"/signer/{st.labs['court'].signer.public_key.hex()}", "/search?q=%22onmouseover%3D"]
    for target in pages:
        resp = st.get(target)
        assert resp.status == 200, target
        body = resp.body.decode()
        for s in HOSTILE:
            assert s not in body, (target, s)
        assert "\u202e" not in body and "\u202c" not in body, target
        for tag, attrs in tags(body):
            assert tag != "img", target
            assert not any(a.startswith("on") for a in attrs), (target, tag, attrs)
            assert tag != "script" or attrs.get("src") == "/static/verify.js", target
    odd = ok(st, f"/record/{st.recs['odd'].id.hex()}")
    assert "&lt;/svg&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in odd
    assert "&#34;onmouseover=alert(1) x=&#34;" in odd
    assert "\\u202eevil\\u202c" in odd  # the bidi override is shown, inert
    svg = ok(st, f"/record/{st.recs['child'].id.hex()}/lineage.svg", "image/svg+xml; charset=utf-8")
    ET.fromstring(svg)  # still one well-formed SVG document
    assert "&lt;/svg&gt;" in svg


def test_unknown_and_malformed_records() -> None:
    env = open_env()
    try:
        site = Site(env.log, env.registry.reader, env.log_key, "o")
        router = Router(routes(site))
        assert router.dispatch(Request.from_target("GET", "/record/" + "00" * 32)).status == 404
        assert router.dispatch(Request.from_target("GET", "/record/xyz")).status == 404
        assert router.dispatch(Request.from_target("GET", "/static/../render.py")).status == 404
        body = router.dispatch(Request.from_target("GET", "/")).body.decode()
        assert "The log holds no records yet." in body
        assert routes(Site(env.log, None, env.log_key, "o")) == []  # a bare log has no explorer
    finally:
        env.close()


def test_static_files(st: Story) -> None:
    assert "verify" in ok(st, "/static/verify.js", "text/javascript; charset=utf-8")
    assert "body" in ok(st, "/static/explorer.css", "text/css; charset=utf-8")


def test_log_page_shows_the_cosigned_checkpoint_under_the_witness_policy(st: Story) -> None:
    from client.core.cosignature import WitnessSigner
    from client.core.witness_policy import WitnessPolicy

    w0, w1 = WitnessSigner("witness.example/w0", b"\x01" * 32), WitnessSigner("witness.example/w1", b"\x02" * 32)
    policy = WitnessPolicy.parse(f"log {st.env.log_key}\nwitness w0 {w0.key().text()}\nwitness w1 {w1.key().text()}\n"
                                 "group both all w0 w1\nquorum both\n")
    latest = st.env.log.latest()
    stranger = sign_note(latest.checkpoint.to_text(), [Signer.generate("stranger.example")]).split(b"\n\n")[-1]
    note = latest.note + w0.cosign(latest.checkpoint.to_text().encode(), 1_800_000_000).encode() + stranger

    class Witnessing:
        def __init__(self, cosigned: SignedCheckpoint | None) -> None:
            self.policy, self._cosigned = policy, cosigned

        def cosigned(self) -> SignedCheckpoint | None:
            return self._cosigned

    def page(witnessing: Witnessing, target: str) -> str:
        site = Site(st.env.log, st.env.registry.reader, st.env.log_key, "example.com/registry-test", witnessing)
        resp = Router(routes(site)).dispatch(Request.from_target("GET", target))
        assert resp.status == 200
        return resp.body.decode()

    body = page(Witnessing(SignedCheckpoint(latest.checkpoint, note)), "/log")
    rows = re.findall(r'<tr class="witness-(\w+)"><td class="mono">(\w+)</td><td>(.*?)</td><td>(.*?)</td></tr>', body)
    assert rows == [("cosigned", "w0", "verifies under the policy's key", "2027-01-15 08:00:00 UTC"),
                    ("missing", "w1", "none", "")]
    assert "is <strong class=\"bad\">not met</strong>" in body
    assert "Lines under no key of the policy: stranger.example." in body
    assert f"size <strong>{latest.checkpoint.size}</strong>" in body
    assert "1 of 2 witnesses, quorum not met" in page(Witnessing(SignedCheckpoint(latest.checkpoint, note)), "/")
    forged = note + w1.cosign(b"another checkpoint\n1\n" + b"A" * 43 + b"=\n", 1_800_000_000).encode()
    body = page(Witnessing(SignedCheckpoint(latest.checkpoint, forged)), "/log")
    assert '<tr class="witness-bad"><td class="mono">w1</td><td><strong class="bad">does not verify</strong>' in body
    assert "no checkpoint has been cosigned yet" in page(Witnessing(None), "/log")
    assert "runs without a witness policy" in ok(st, "/log")
