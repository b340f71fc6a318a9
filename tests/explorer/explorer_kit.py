"""A small registry for the explorer's tests: a model family, a compare attestation, a dispute, hostile text."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from registry_kit import Env, Lab, story

from client.core.records import (
    Attestation,
    Claim,
    Digest,
    DigestAlgorithm,
    Dispute,
    ModelCheckpoint,
    ModelParent,
    ModelRelation,
    SignedRecord,
)
from ledger.http.router import Request, Response, Router
from ledger.http.site import Site, build_router
from ledger.registry.registry import Submission

VERDICT_SUMMARY = ("descent test: related (statistical), p-value 1e-42, alpha 0.01; "
                   "shared fraction a_in_b 0.9375, b_in_a 0.9375")
HOSTILE = ("<script>alert(1)</script>", '"onmouseover=alert(1) x="', "</svg><script>alert(2)</script>",
           "\u202eevil\u202c", "<img src=x onerror=alert(3)>")
"""Strings a signer might choose to break a page: each must reach the page escaped, never as written."""


@dataclass
class Story:
    env: Env
    recs: dict[str, SignedRecord]
    labs: dict[str, Lab]

    def site(self) -> Site:
        return Site(self.env.log, self.env.registry.reader, self.env.log_key, "example.com/registry-test")

    def router(self) -> Router:
        return build_router(self.site(), ("ledger.http.explorer",))

    def get(self, target: str) -> Response:
        return self.router().dispatch(Request.from_target("GET", target))


def _ok(env: Env, *subs: Submission) -> None:
    out = env.registry.register(list(subs))
    assert all(not isinstance(r, Exception) for r in out), out


def build(env: Env) -> Story:
    """registry_kit's story (dataset, base, chat fine-tune, chat-q4 quantization) plus an auditor's
    descent-test attestation of chat against base, a dispute of chat-q4, and a checkpoint whose
    signer-chosen text is hostile (names, run, metadata, sources, summaries)."""
    recs = story(env)
    auditor, court = Lab("auditor"), Lab("lab-c")
    _ok(env, auditor.register(), court.register())
    evidence = Digest(DigestAlgorithm.BLAKE3, hashlib.blake2s(b"report").digest())
    att = auditor.sign(Attestation(Claim.DESCENT_TEST, recs["child"].id, recs["base"].id, evidence, VERDICT_SUMMARY))
    dispute = court.sign(Dispute(recs["grandchild"].id, "the quantization is ours\nsecond line " + HOSTILE[3]))
    _ok(env, Submission(att.entry), Submission(dispute.entry))
    sub, hostile = court.checkpoint(HOSTILE[0] + HOSTILE[1], 7, parents=((recs["child"].id, "merge"),))
    s = hostile.record.statement
    assert isinstance(s, ModelCheckpoint)
    # A second hostile checkpoint, with the rest of the hostile text in fields admission lets through.
    odd = court.sign(ModelCheckpoint(HOSTILE[2], HOSTILE[1], 3, s.manifest, HOSTILE[4],
                                     parents=(ModelParent(recs["child"].id, ModelRelation.ADAPTER),),
                                     metadata=(("note", HOSTILE[3] + HOSTILE[2]),)))
    hostile_att = court.sign(Attestation(Claim.DESCENDS_FROM, odd.id, recs["child"].id, None,
                                         HOSTILE[0] + HOSTILE[3] + HOSTILE[4]))
    _ok(env, sub, Submission(odd.entry, sub.manifest))
    _ok(env, Submission(hostile_att.entry))
    recs.update(attestation=att, dispute=dispute, hostile=hostile, odd=odd, hostile_att=hostile_att)
    return Story(env, recs, {"auditor": auditor, "court": court})
