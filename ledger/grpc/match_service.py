"""The gRPC edge of ``Match`` and ``GetFingerprint`` (``provenance.registry.v1``): protobuf in and out.

Thin: checks the request's shape, runs :class:`ledger.registry.matching.Matcher` (CPU-bound: the
caller runs this in a worker thread), converts the answer.
"""

from __future__ import annotations

import json

from client._pb.provenance.registry.v1 import registry_pb2 as pb
from client.core.descent.compare import DEFAULT_ALPHA
from client.core.descent.fingerprint import decode
from client.core.descent.ledger_evidence import finite_json
from client.errors import InvalidInputError
from ledger.registry.fingerprints import MAX_FINGERPRINT
from ledger.registry.matching import Matcher, candidates
from ledger.registry.queries import LoggedRecord


def _rec(r: LoggedRecord) -> pb.Record:
    return pb.Record(id=r.id, index=r.index, entry=r.signed.entry)


def match(matcher: Matcher, req: pb.MatchRequest) -> pb.MatchResponse:
    """Answer one ``Match`` request. Blocking."""
    limit = candidates(req.limit)
    alpha = req.alpha or DEFAULT_ALPHA
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must be between 0 and 1, got {alpha}")
    if len(req.fingerprint) > MAX_FINGERPRINT:
        raise InvalidInputError(f"fingerprint is {len(req.fingerprint)} bytes, more than {MAX_FINGERPRINT}")
    exact = matcher.exact([bytes(d) for d in req.tensor_digests], [bytes(d) for d in req.chunk_digests], limit)
    resp = pb.MatchResponse(
        exact=[pb.ExactMatch(record=_rec(h.record), tensors=h.tensors, chunks=h.chunks) for h in exact]
    )
    if req.fingerprint:
        suspect = decode(bytes(req.fingerprint), source="suspect fingerprint")
        related, held = matcher.related(suspect, alpha, limit)
        resp.fingerprints = held
        for h in related:
            c = h.match.comparison
            resp.related.append(pb.RelatedMatch(
                record=_rec(h.record), fingerprint_digest=h.fingerprint_digest,
                screen_score=h.match.screen_score, verdict=c.verdict, log10_p=c.log10_p,
                adjusted_log10_p=h.match.adjusted_log10_p, significant=h.match.significant,
                comparison_json=json.dumps(finite_json(c.to_json()), sort_keys=True, allow_nan=False),
            ))
    return resp


def get_fingerprint(matcher: Matcher, req: pb.GetFingerprintRequest) -> pb.GetFingerprintResponse:
    if len(req.digest) != 32:
        raise InvalidInputError(f"digest must be 32 bytes, got {len(req.digest)}")
    return pb.GetFingerprintResponse(fingerprint=matcher.fingerprint(bytes(req.digest)))
