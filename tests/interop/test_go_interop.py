"""Interop with Go's golang.org/x/mod/sumdb/note and sumdb/tlog, the outside reference.

tests/interop/gocheck (Go) is built once per session in GOPATH mode against Debian's
golang-golang-x-mod-dev; tests/references.py skips these tests without Go and fails them under CI=true.

What is proved here:
- notes: Go verifies what Python signs; Python verifies what Go signs; for the same key both sign
  byte-identical notes (Ed25519 is deterministic); key texts from either side parse on the other;
- strictness: for every single-character mangling of a note or key, whatever Python accepts Go
  accepts with the same meaning, and whatever Go rejects Python rejects;
- trees: for a few hundred random trees, roots and proofs built from client/core/merkle.py plans equal
  tlog.TreeHash / ProveRecord / ProveTree, Go's CheckRecord / CheckTree accept them, and Go and
  Python give the same verdict on mutated proofs and claims;
- checkpoints: the text equals tlog.FormatTree for Go's own origin, and size parsing agrees with
  tlog.ParseTree.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from references import require_go_sumdb
from test_note import COSIGNED, CP_TEXT, GO_NOTE, GO_SKEY, GO_TEXT, GO_VKEY, LOG_SKEY, witness_signer

from client.core import merkle
from client.core.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from client.core.merkle import CompactRange, Node
from client.core.note import Signer, Verifier, open_note, sign_note
from client.errors import FormatError, ProofError, SignatureError

pytestmark = pytest.mark.interop

GOCHECK_SRC = Path(__file__).parent / "gocheck"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text or "")


@dataclass(frozen=True)
class GoCheck:
    binary: Path

    def run(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Answers from Go, one per request (see gocheck/main.go)."""
        done = subprocess.run(
            [str(self.binary)], input=json.dumps(requests).encode(), capture_output=True, check=False, timeout=300
        )
        assert done.returncode == 0, done.stderr.decode()
        answers: list[dict[str, Any]] = json.loads(done.stdout)
        assert len(answers) == len(requests)
        return answers

    def one(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.run([request])[0]


@pytest.fixture(scope="session")
def go(tmp_path_factory: pytest.TempPathFactory) -> GoCheck:
    go_bin, gopath = require_go_sumdb()
    out = tmp_path_factory.mktemp("gocheck")
    env = {
        **os.environ,
        "GOPATH": str(gopath),
        "GO111MODULE": "off",  # Debian packages Go libraries for GOPATH mode
        "GOFLAGS": "",
        "GOCACHE": str(out / "cache"),
        "CGO_ENABLED": "0",
    }
    built = subprocess.run(
        [go_bin, "build", "-o", str(out / "gocheck"), "."],
        cwd=GOCHECK_SRC,
        env=env,
        capture_output=True,
        check=False,
        timeout=600,
    )
    assert built.returncode == 0, f"building gocheck failed:\n{built.stderr.decode()}"
    return GoCheck(out / "gocheck")


TEXTS = [
    "hello\n",
    "\n",
    "example.com/log\n42\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    "paragraph one\n\nparagraph two\n",
    "ends in blank lines\n\n\n",
    "\u00fcn\u00efc\u00f6d\u00e9 \u2713 \u2014 em dash inside\n",
    "\u2014 looks like a signature line but is text\n",
    "x" * 100_000 + "\n",
]
NAMES = [
    "example.com/log",
    "PeterNeumann",
    "a",
    "\u00fcn\u00ef.example/\u03ba\u03bb\u03b5\u03b9\u03b4\u03af",
    "x/" + "y" * 300,
]


# --- notes ----------------------------------------------------------------------------------


def test_golden_vectors_are_go_bytes(go: GoCheck) -> None:
    """The golden notes in tests/core/test_note.py are what Go itself signs and opens."""
    signed, opened = go.run(
        [
            {"cmd": "sign", "text": CP_TEXT, "signers": [LOG_SKEY, witness_signer().private_text()]},
            {"cmd": "open", "note": b64(GO_NOTE), "verifiers": [GO_VKEY]},
        ]
    )
    assert unb64(signed["note"]) == COSIGNED
    assert opened["ok"] and opened["text"] == GO_TEXT
    assert unb64(go.one({"cmd": "sign", "text": GO_TEXT, "signers": [GO_SKEY]})["note"]) == GO_NOTE


def test_go_and_python_sign_identical_notes(go: GoCheck) -> None:
    signers = [Signer.generate(name) for name in NAMES[:3]]
    requests = []
    for text in TEXTS:
        requests.append({"cmd": "sign", "text": text, "signers": [signers[0].private_text()]})
        requests.append({"cmd": "sign", "text": text, "signers": [s.private_text() for s in signers]})
    answers = go.run(requests)
    for i, text in enumerate(TEXTS):
        one, many = answers[2 * i], answers[2 * i + 1]
        assert one["ok"] and many["ok"], (one, many)
        assert unb64(one["note"]) == sign_note(text, signers[:1])
        assert unb64(many["note"]) == sign_note(text, signers)
        opened = open_note(unb64(many["note"]), [signers[1].verifier()])
        assert opened.text == text
        assert [s.name for s in opened.signatures] == [signers[1].name]
        assert [s.name for s in opened.unverified] == [signers[0].name, signers[2].name]


def test_go_opens_python_notes(go: GoCheck) -> None:
    log, witness = Signer.generate("example.com/log"), Signer.generate("witness.example/w1")
    requests = []
    for text in TEXTS:
        note = b64(sign_note(text, [log, witness]))
        requests.append({"cmd": "open", "note": note, "verifiers": [log.verifier().text()]})
        requests.append({"cmd": "open", "note": note, "verifiers": [log.verifier().text(), witness.verifier().text()]})
        requests.append({"cmd": "open", "note": note, "verifiers": [Signer.generate(log.name).verifier().text()]})
    answers = go.run(requests)
    for i, text in enumerate(TEXTS):
        just_log, both, stranger = answers[3 * i : 3 * i + 3]
        assert just_log["ok"] and just_log["text"] == text
        assert [(s["name"], s["key_id"]) for s in just_log["sigs"]] == [(log.name, log.key_id.hex())]
        assert [(s["name"], s["key_id"]) for s in just_log["unverified"]] == [(witness.name, witness.key_id.hex())]
        assert both["ok"] and len(both["sigs"]) == 2 and not both.get("unverified")
        assert not stranger["ok"], "a key with the same name but another key ID must not verify"


def test_key_texts_round_trip_through_go(go: GoCheck) -> None:
    answers = go.run([{"cmd": "generate", "name": name} for name in NAMES])
    for name, answer in zip(NAMES, answers, strict=True):
        assert answer["ok"], answer
        signer = Signer.from_private_text(answer["signer_key"])
        verifier = Verifier.from_text(answer["verifier_key"])
        assert signer.name == verifier.name == name
        assert signer.private_text() == answer["signer_key"]
        assert signer.verifier() == verifier
        assert verifier.text() == answer["verifier_key"]
        assert open_note(sign_note("text\n", [signer]), [verifier]).text == "text\n"

    ours = [Signer.generate(name) for name in NAMES]
    requests = [{"cmd": "signer", "key": s.private_text()} for s in ours]
    requests += [{"cmd": "verifier", "key": s.verifier().text()} for s in ours]
    answers = go.run(requests)
    for i, s in enumerate(ours):
        for answer in (answers[i], answers[len(ours) + i]):
            assert answer["ok"], answer
            assert (answer["name"], answer["key_id"]) == (s.name, s.key_id.hex())


def _byte_manglings(data: bytes) -> list[bytes]:
    out = []
    for i in range(len(data)):
        out.append(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :])
        out.append(data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1 :])
        out.append(data[:i] + b"\n" + data[i + 1 :])
        out.append(data[:i] + data[i + 1 :])
        out.append(data[:i] + data[i : i + 1] * 2 + data[i + 1 :])
    return [m for m in out if m != data]


def test_mangled_notes_python_never_laxer_than_go(go: GoCheck) -> None:
    log, witness = Signer.generate("example.com/log"), Signer.generate("witness.example/w1")
    text = Checkpoint("example.com/log", 1234, bytes(range(32))).to_text()
    note = sign_note(text, [log, witness])
    mangled = _byte_manglings(note)
    answers = go.run([{"cmd": "open", "note": b64(m), "verifiers": [log.verifier().text()]} for m in mangled])
    stricter = 0
    for m, answer in zip(mangled, answers, strict=True):
        try:
            opened = open_note(m, [log.verifier()])
        except (FormatError, SignatureError) as e:
            if answer["ok"]:
                # Python is stricter only in format (canonical base64); a signature verdict must agree.
                assert isinstance(e, FormatError), (m, e, answer)
                assert answer["text"] == text
                stricter += 1
            continue
        assert opened.text == text, "accepted an altered text"
        assert [(s.name, s.key_id) for s in opened.signatures] == [(log.name, log.key_id)]
        assert answer["ok"] and answer["text"] == opened.text, (m, answer)
    assert stricter < len(mangled) // 10


def _text_manglings(text: str) -> list[str]:
    out = []
    for i, c in enumerate(text):
        for r in {chr(ord(c) ^ 1), c.swapcase(), "+", " ", ""}:
            out.append(text[:i] + r + text[i + 1 :])
        out.append(text[:i] + c + text[i:])
    return [m for m in dict.fromkeys(out) if m != text]


def _compare_key_parsing(
    go: GoCheck, cmd: str, original: str, parse: Callable[[str], Signer | Verifier]
) -> tuple[int, int]:
    mangled = _text_manglings(original)
    answers = go.run([{"cmd": cmd, "key": m} for m in mangled])
    accepted = go_only = 0
    for m, answer in zip(mangled, answers, strict=True):
        try:
            key = parse(m)
        except FormatError:
            go_only += answer["ok"]
            continue
        accepted += 1
        assert answer["ok"], (m, answer)
        assert (answer["name"], answer["key_id"]) == (key.name, key.key_id.hex())
    return accepted, go_only


def test_mangled_keys_python_never_laxer_than_go(go: GoCheck) -> None:
    signer = Signer.generate("example.com/log")
    while signer.key_id.hex().isdigit():  # the uppercase check needs a hex letter (all digits: p = 2.3%)
        signer = Signer.generate("example.com/log")
    accepted, go_only = _compare_key_parsing(go, "verifier", signer.verifier().text(), Verifier.from_text)
    assert accepted == 0, "a mangled verifier key parsed"
    assert go_only > 0, "expected Go to accept uppercase hex key IDs, which Python refuses as non-canonical"
    accepted, _ = _compare_key_parsing(go, "signer", signer.private_text(), Signer.from_private_text)
    assert accepted == 0, "a mangled signer key parsed"


# --- checkpoints ----------------------------------------------------------------------------


def test_checkpoints_signed_by_go_open_in_python_and_back(go: GoCheck) -> None:
    log = Signer.generate("example.com/log")
    cps = [
        Checkpoint("example.com/log", 0, merkle.EMPTY_ROOT),
        Checkpoint("example.com/log", (1 << 63) - 1, bytes(range(32))),
        Checkpoint("example.com/log", 7, bytes(32), ("ext one", "\u2014 two")),
    ]
    answers = go.run([{"cmd": "sign", "text": cp.to_text(), "signers": [log.private_text()]} for cp in cps])
    answers += go.run(
        [{"cmd": "open", "note": b64(sign_checkpoint(cp, log)), "verifiers": [log.verifier().text()]} for cp in cps]
    )
    for i, cp in enumerate(cps):
        signed_by_go, opened_by_go = answers[i], answers[len(cps) + i]
        assert open_checkpoint(unb64(signed_by_go["note"]), log.verifier()) == cp
        assert unb64(signed_by_go["note"]) == sign_checkpoint(cp, log)
        assert opened_by_go["ok"] and opened_by_go["text"] == cp.to_text()


SIZE_LINES = [
    "0", "1", "10", "01", "00", "-1", "+1", "-0", " 1", "1 ", "0x1", "1_0", "1e3", "", "\uff11", "\u0661",
    "9223372036854775807", "9223372036854775808", "18446744073709551616", "0" * 30 + "1",
]  # fmt: skip


def test_checkpoint_size_parsing_agrees_with_go_parsetree(go: GoCheck) -> None:
    root = b64(bytes(range(32)))
    texts = [f"go.sum database tree\n{line}\n{root}\n" for line in SIZE_LINES]
    answers = go.run([{"cmd": "parse_tree", "text": t} for t in texts])
    for line, text, answer in zip(SIZE_LINES, texts, answers, strict=True):
        try:
            cp = Checkpoint.from_text(text)
        except FormatError:
            assert not answer["ok"], f"Go accepts size line {line!r}"
            continue
        assert answer["ok"], f"Go refuses size line {line!r}"
        assert (cp.size, cp.root) == (answer["tree_size"], unb64(answer["root"]))


def test_checkpoint_text_is_go_format_tree(go: GoCheck) -> None:
    rng = random.Random(9162)
    cases = [(n, rng.randbytes(32)) for n in [0, 1, 2, 1000, (1 << 63) - 1] + [rng.getrandbits(62) for _ in range(20)]]
    answers = go.run([{"cmd": "format_tree", "size": n, "root": b64(h)} for n, h in cases])
    for (n, h), answer in zip(cases, answers, strict=True):
        assert answer["text"] == Checkpoint("go.sum database tree", n, h).to_text()


def test_root_base64_python_never_laxer_than_go(go: GoCheck) -> None:
    good = f"go.sum database tree\n5\n{b64(bytes(range(32)))}\n"
    lines = good.split("\n")
    mangled = [
        "\n".join([*lines[:2], m, *lines[3:]])
        for m in _text_manglings(lines[2]) + [lines[2].rstrip("="), lines[2] + "=", b64(bytes(31)), b64(bytes(33))]
    ]
    answers = go.run([{"cmd": "parse_tree", "text": t} for t in mangled])
    for text, answer in zip(mangled, answers, strict=True):
        try:
            cp = Checkpoint.from_text(text)
        except FormatError:
            continue
        assert answer["ok"] and unb64(answer["root"]) == cp.root, text


# --- trees ----------------------------------------------------------------------------------


class PyTree:
    """A log's view of a tree: every perfect node CompactRange.append reports, keyed by Node."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves
        self.nodes: dict[Node, bytes] = {}
        cr = CompactRange()
        for h in leaves:
            self.nodes.update(cr.append(h))

    def root(self, size: int) -> bytes:
        if size == 0:
            return merkle.EMPTY_ROOT
        return merkle.fold([self.nodes[n] for n in merkle.root_plan(size)])

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return merkle.assemble(merkle.inclusion_plan(index, size), self.nodes)

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        return merkle.assemble(merkle.consistency_plan(size1, size2), self.nodes)


def _py_accepts(check: Callable[[], None]) -> bool:
    try:
        check()
    except ProofError:
        return False
    return True


def _flip(h: bytes, bit: int) -> bytes:
    out = bytearray(h)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_empty_tree_root_is_rfc9162_not_go_zero_hash(go: GoCheck) -> None:
    """Go's tlog defines the empty tree's hash as all zeros; RFC 9162 2.1.1 says SHA-256 of nothing."""
    answer = go.one({"cmd": "tree", "leaf_hashes": [], "sizes": [0]})
    assert unb64(answer["roots"][0]) == bytes(32)
    assert merkle.root_from_leaf_hashes([]) == merkle.EMPTY_ROOT != bytes(32)


TREES = 300

Claim = tuple[dict[str, Any], bool]  # (gocheck request, Python's verdict)


def _inclusion_claims(tree: PyTree, index: int, size: int, rng: random.Random) -> list[Claim]:
    """The honest inclusion claim first, then mutations of it."""
    proof, root, leaf = tree.inclusion(index, size), tree.root(size), tree.leaves[index]
    variants = [(index, size, proof)]
    variants += [
        (index, size, [*proof[:i], _flip(p, rng.randrange(256)), *proof[i + 1 :]]) for i, p in enumerate(proof)
    ]
    variants += [(index, size + d, proof) for d in (-1, 1, size)]
    variants += [(index + d, size, proof) for d in (-1, 1)]
    variants += [(index, size, proof[:-1]), (index, size, [*proof, root])]
    claims = []
    for i, s, p in variants:
        request = {"cmd": "check_record", "index": i, "size": s, "leaf": b64(leaf), "proof": [b64(h) for h in p]}
        request["root"] = b64(root)
        claims.append((request, _py_accepts(lambda i=i, s=s, p=p: merkle.verify_inclusion(i, s, leaf, p, root))))
    return claims


def _consistency_claims(tree: PyTree, size1: int, size2: int, rng: random.Random) -> list[Claim]:
    """The honest consistency claim first, then mutations of it."""
    proof, root1, root2 = tree.consistency(size1, size2), tree.root(size1), tree.root(size2)
    variants = [(size1, size2, proof, root1, root2), (size1, size2, proof, root2, root1)]
    variants += [
        (size1, size2, [*proof[:i], _flip(p, rng.randrange(256)), *proof[i + 1 :]], root1, root2)
        for i, p in enumerate(proof)
    ]
    variants += [(size1 + d, size2, proof, root1, root2) for d in (-1, 1)]
    variants += [(size1, size2 + d, proof, root1, root2) for d in (-1, 1, size2)]
    variants += [(size1, size2, proof[:-1], root1, root2), (size1, size2, [*proof, root2], root1, root2)]
    claims = []
    for s1, s2, p, r1, r2 in variants:
        request = {"cmd": "check_tree", "size1": s1, "size2": s2, "proof": [b64(h) for h in p]}
        request |= {"root1": b64(r1), "root2": b64(r2)}
        verdict = _py_accepts(lambda s1=s1, s2=s2, p=p, r1=r1, r2=r2: merkle.verify_consistency(s1, s2, p, r1, r2))
        claims.append((request, verdict))
    return claims


def test_random_trees_match_go_tlog(go: GoCheck) -> None:
    rng = random.Random(6962)
    tree_requests, trees, queries = [], [], []
    for t in range(TREES):
        size = rng.choice([rng.randint(1, 20), rng.randint(1, 300), rng.randint(1, 1100)])
        leaves = [merkle.leaf_hash(b"tree %d leaf %d" % (t, i)) for i in range(size)]
        sizes = sorted({size, *(rng.randint(1, size) for _ in range(4))})
        records = [(rng.randrange(s), s) for s in (rng.randint(1, size) for _ in range(4))]
        pairs = [tuple(sorted((rng.randint(1, size), rng.randint(1, size)))) for _ in range(4)]
        trees.append(PyTree(leaves))
        queries.append((sizes, records, pairs))
        tree_requests.append(
            {"cmd": "tree", "leaf_hashes": [b64(h) for h in leaves], "sizes": sizes, "records": records, "trees": pairs}
        )
    answers = go.run(tree_requests)

    claims: list[Claim] = []
    honest = 0
    for tree, (sizes, records, pairs), answer in zip(trees, queries, answers, strict=True):
        assert answer["ok"], answer
        assert [unb64(r) for r in answer["roots"]] == [tree.root(s) for s in sizes]
        for (index, size), go_proof in zip(records, answer["record_proofs"], strict=True):
            assert [unb64(p) for p in go_proof or []] == tree.inclusion(index, size), (index, size)
            new = _inclusion_claims(tree, index, size, rng)
            assert new[0][1], "Python rejects its own honest inclusion proof"
            claims += new
            honest += 1
        for (size1, size2), go_proof in zip(pairs, answer["tree_proofs"], strict=True):
            assert [unb64(p) for p in go_proof or []] == tree.consistency(size1, size2), (size1, size2)
            new = _consistency_claims(tree, size1, size2, rng)
            assert new[0][1], "Python rejects its own honest consistency proof"
            claims += new
            honest += 1
    go_verdicts = [a["ok"] for a in go.run([request for request, _ in claims])]
    disagreements = [(c, g) for c, g in zip(claims, go_verdicts, strict=True) if c[1] != g]
    assert not disagreements, disagreements[:3]
    # Honest claims are accepted; nearly every mutation is rejected.
    assert honest <= sum(go_verdicts) < len(go_verdicts) // 3
