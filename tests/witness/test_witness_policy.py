"""The tlog-policy text: parsing with line-numbered errors, quorum logic (any/all/K-of-N, nested), evaluation."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.checkpoint import Checkpoint, sign_checkpoint
from client.core.cosignature import WitnessSigner
from client.core.note import Signer
from client.core.witness_policy import WitnessPolicy
from client.errors import FormatError

LOG = Signer.from_seed("example.com/log", bytes(range(1, 33)))
CP = Checkpoint("example.com/log", 7, hashlib.sha256(b"root").digest())
NOTE = sign_checkpoint(CP, LOG)
BODY = CP.to_text().encode()
SIGNERS = {n: WitnessSigner(f"w.example/{n}", hashlib.sha256(n.encode()).digest()) for n in
           ("X1", "X2", "X3", "Y1", "Y2", "Y3")}
VK = {n: s.key().text() for n, s in SIGNERS.items()}

EXAMPLE = f"""# the example of c2sp.org/tlog-policy
log {LOG.verifier().text()} https://log.example/

witness X1 {VK["X1"]}
witness X2 {VK["X2"]}
\twitness   X3\t{VK["X3"]}   https://x3.example/
group X-witnesses 2 X1 X2 X3

witness Y1 {VK["Y1"]}
witness Y2 {VK["Y2"]}
witness Y3 {VK["Y3"]}
group Y-witnesses any Y1 Y2 Y3

group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
"""


def cosigned(*names: str, ts: int = 1_700_000_000) -> bytes:
    return NOTE + b"".join(SIGNERS[n].cosign(BODY, ts).encode() for n in names)


def test_example_parses() -> None:
    p = WitnessPolicy.parse(EXAMPLE)
    assert [log.origin for log in p.logs] == ["example.com/log"]
    assert p.logs[0].url == "https://log.example/"
    assert [w.name for w in p.witnesses] == ["X1", "X2", "X3", "Y1", "Y2", "Y3"]
    assert p.witness("X3") is not None and p.witness("X3").url == "https://x3.example/"  # type: ignore[union-attr]
    assert p.witness("X1").key == SIGNERS["X1"].key()  # type: ignore[union-attr]
    assert [(g.name, g.threshold) for g in p.groups] == [("X-witnesses", 2), ("Y-witnesses", 1), ("X-and-Y", 2)]
    assert p.quorum == "X-and-Y"
    assert p.witness("X-witnesses") is None


def test_example_quorum_evaluation() -> None:
    p = WitnessPolicy.parse(EXAMPLE)
    r = p.evaluate(cosigned("X1", "X3", "Y2"))
    assert r.satisfied and r.verified == ("X1", "X3", "Y2")
    assert r.missing == ("X2", "Y1", "Y3") and r.bad == () and r.unknown_lines == ()
    assert r.logs == ("example.com/log",) and dict(r.timestamps)["X3"] == 1_700_000_000

    r = p.evaluate(cosigned("X1", "Y1", "Y2", "Y3"))
    assert not r.satisfied and r.missing == ("X2", "X3")
    assert not p.evaluate(cosigned("X1", "X2", "X3")).satisfied
    assert not p.evaluate(NOTE).satisfied


def test_bad_and_unknown_lines_are_reported() -> None:
    p = WitnessPolicy.parse(EXAMPLE)
    other = Checkpoint("example.com/log", 8, CP.root).to_text().encode()
    forged = SIGNERS["X2"].cosign(other, 5).encode()  # X2's key, another checkpoint
    stranger = WitnessSigner("w.example/stranger", bytes(32)).cosign(BODY, 5).encode()
    fake = "\u2014 w.example/fake " + base64.b64encode(bytes(76)).decode() + "\n"
    r = p.evaluate(cosigned("X1", "Y1") + forged + stranger + fake.encode())
    assert r.verified == ("X1", "Y1") and r.bad == ("X2",) and not r.satisfied
    assert "X2" not in r.missing
    assert [s.name for s in r.unknown_lines] == ["w.example/stranger", "w.example/fake"]


def test_a_bad_line_beside_a_good_one_makes_the_witness_bad() -> None:
    p = WitnessPolicy.parse(EXAMPLE)
    other = Checkpoint("example.com/log", 8, CP.root).to_text().encode()
    r = p.evaluate(cosigned("X1", "X2", "Y1") + SIGNERS["X2"].cosign(other, 5).encode())
    assert r.bad == ("X2",) and r.verified == ("X1", "Y1") and not r.satisfied


def test_log_signature_outside_the_policy_is_an_unknown_line() -> None:
    p = WitnessPolicy.parse(f"witness X1 {VK['X1']}\nquorum X1\n")
    r = p.evaluate(cosigned("X1"))
    assert r.satisfied and r.logs == () and [s.name for s in r.unknown_lines] == ["example.com/log"]


def test_quorum_none_is_always_satisfied() -> None:
    p = WitnessPolicy.parse("quorum none\n")
    r = p.evaluate(NOTE)
    assert r.satisfied and r.missing == () and r.verified == ()


def test_single_witness_quorum() -> None:
    p = WitnessPolicy.parse(f"witness X1 {VK['X1']}\nwitness X2 {VK['X2']}\nquorum X2\n")
    assert p.evaluate(cosigned("X2")).satisfied
    r = p.evaluate(cosigned("X1"))
    assert not r.satisfied and r.missing == ("X2",) and r.verified == ("X1",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "policy has no quorum line"),
        ("# nothing\n\n", "no quorum line"),
        ("quorum none\nquorum none\n", "policy line 2: a second quorum line"),
        ("quorum X1\n", "policy line 1: quorum 'X1' is not a witness or group defined on an earlier line"),
        (f"quorum X1\nwitness X1 {VK['X1']}\n", "policy line 1: quorum 'X1' is not"),
        ("quorum\n", "policy line 1: 'quorum' takes exactly one name"),
        ("frob x\nquorum none\n", "policy line 1: unknown keyword 'frob'"),
        ("log\nquorum none\n", "policy line 1: 'log' needs a vkey"),
        ("log nonsense\n", "policy line 1: log vkey:"),
        (f"log {VK['X1']}\n", "policy line 1: log vkey:"),  # a 0x04 key is not a log key
        (f"witness X1 {LOG.verifier().text()}\n", "line 1: witness X1: cosigner vkey example.com/log: key type 0x01"),
        ("witness X1\n", "policy line 1: 'witness' needs a name and a vkey"),
        (f"witness X1 {VK['X1']} url extra\n", "policy line 1: too many fields for 'witness'"),
        (f"log {LOG.verifier().text()} url extra\n", "policy line 1: too many fields for 'log'"),
        (f"witness none {VK['X1']}\n", "policy line 1: 'none' is reserved"),
        (f"witness X1 {VK['X1']}\nwitness X1 {VK['X2']}\n", "policy line 2: name 'X1' is already defined"),
        (f"witness X1 {VK['X1']}\nwitness X2 {VK['X1']}\n", "line 2: witness X2 has the same public key as witness X1"),
        (f"log {LOG.verifier().text()}\nlog {LOG.verifier().text()}\n", "log example.com/log: another log line"),
        (f"witness X1 {VK['X1']}\ngroup X1 any X1\n", "policy line 2: name 'X1' is already defined"),
        (f"witness X1 {VK['X1']}\ngroup G any X1 X2\n", "line 2: group G: member 'X2' is not a witness or group"),
        (f"witness X1 {VK['X1']}\ngroup G any X1 X1\n", "policy line 2: group G: member 'X1' is listed twice"),
        (f"witness X1 {VK['X1']}\ngroup G any G\n", "policy line 2: group G: member 'G' is not"),
        (f"witness X1 {VK['X1']}\ngroup G any none\n", "policy line 2: group G: 'none' cannot be a group member"),
        (f"witness X1 {VK['X1']}\ngroup G 2 X1\n", "policy line 2: group G: threshold 2 is more than its 1 members"),
        (f"witness X1 {VK['X1']}\ngroup G 0 X1\n", "line 2: group G: threshold '0' is not all, any or a decimal"),
        (f"witness X1 {VK['X1']}\ngroup G 01 X1\n", "threshold '01' is not"),
        (f"witness X1 {VK['X1']}\ngroup G some X1\n", "threshold 'some' is not"),
        (f"witness X1 {VK['X1']}\ngroup G any\n", "policy line 2: 'group' needs a name, a threshold and at least one"),
        ("quorum none\r\n", "policy line 1: control character 0x0d"),
        ("# ok\n\nquorum\x00 none\n", "policy line 3: control character 0x00"),
    ],
)
def test_errors_name_the_line_and_the_problem(text: str, message: str) -> None:
    with pytest.raises(FormatError) as info:
        WitnessPolicy.parse(text)
    assert message in str(info.value)


def test_bytes_input_and_bad_utf8() -> None:
    assert WitnessPolicy.parse(b"quorum none\n").quorum == "none"
    with pytest.raises(FormatError, match="not valid UTF-8"):
        WitnessPolicy.parse(b"quorum none # \xff\n")


def test_lines_after_the_quorum_and_comments_anywhere() -> None:
    text = f"  # lead\nwitness X1 {VK['X1']}\nquorum X1\n\t# tail\nwitness X2 {VK['X2']}\n"
    p = WitnessPolicy.parse(text)
    assert [w.name for w in p.witnesses] == ["X1", "X2"] and p.quorum == "X1"


# -- quorum logic as properties ----------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """A naive quorum: a witness name, or (k, members)."""

    witness: str | None
    k: int = 0
    members: tuple[Tree, ...] = ()

    def holds(self, present: frozenset[str]) -> bool:
        if self.witness is not None:
            return self.witness in present
        return sum(m.holds(present) for m in self.members) >= self.k


def _trees(names: list[str]) -> st.SearchStrategy[Tree]:
    leaves = st.sampled_from(names).map(lambda n: Tree(n))

    def group(children: st.SearchStrategy[Tree]) -> st.SearchStrategy[Tree]:
        return st.lists(children, min_size=1, max_size=4).flatmap(
            lambda ms: st.integers(1, len(ms)).map(lambda k: Tree(None, k, tuple(ms))))

    return st.recursive(leaves, group, max_leaves=12)


WITNESSES = [f"W{i}" for i in range(6)]
KEYS = {n: WitnessSigner(f"w.example/{n}", hashlib.sha256(n.encode()).digest()) for n in WITNESSES}


def _policy_text(tree: Tree) -> str:
    lines = [f"witness {n} {KEYS[n].key().text()}" for n in WITNESSES]
    counter = iter(range(1000))

    def define(t: Tree) -> str:
        if t.witness is not None:
            return t.witness
        names = []
        for m in t.members:
            name = define(m) if m.witness is None else m.witness
            names.append(name)
        # A name may be listed once per group: wrap repeats in a one-member group of their own.
        unique = []
        for name in names:
            while name in unique:
                alias = f"G{next(counter)}"
                lines.append(f"group {alias} any {name}")
                name = alias
            unique.append(name)
        mine = f"G{next(counter)}"
        k = "all" if t.k == len(unique) and t.k > 1 else "any" if t.k == 1 else str(t.k)
        lines.append(f"group {mine} {k} {' '.join(unique)}")
        return mine

    lines.append(f"quorum {define(tree)}")
    return "\n".join(lines) + "\n"


@given(_trees(WITNESSES), st.sets(st.sampled_from(WITNESSES)))
def test_policy_quorum_matches_a_naive_recursive_reading(tree: Tree, present: set[str]) -> None:
    policy = WitnessPolicy.parse(_policy_text(tree))
    assert policy.satisfied_by(present) == tree.holds(frozenset(present))


@given(_trees(WITNESSES), st.sets(st.sampled_from(WITNESSES)), st.sampled_from(WITNESSES))
def test_one_more_cosignature_never_breaks_a_quorum(tree: Tree, present: set[str], extra: str) -> None:
    policy = WitnessPolicy.parse(_policy_text(tree))
    if policy.satisfied_by(present):
        assert policy.satisfied_by(present | {extra})


@given(st.integers(1, 6), st.integers(1, 6), st.sets(st.sampled_from(WITNESSES)))
def test_k_of_n_any_all(n: int, k: int, present: set[str]) -> None:
    k = min(k, n)
    members = WITNESSES[:n]
    base = "".join(f"witness {m} {KEYS[m].key().text()}\n" for m in WITNESSES)
    for spec, want in ((str(k), k), ("any", 1), ("all", n)):
        policy = WitnessPolicy.parse(base + f"group G {spec} {' '.join(members)}\nquorum G\n")
        assert policy.satisfied_by(present) == (len(present & set(members)) >= want)


@given(_trees(WITNESSES), st.sets(st.sampled_from(WITNESSES)))
def test_evaluate_agrees_with_satisfied_by_on_signed_notes(tree: Tree, present: set[str]) -> None:
    policy = WitnessPolicy.parse(_policy_text(tree))
    note = NOTE + b"".join(KEYS[n].cosign(BODY, 1).encode() for n in sorted(present))
    r = policy.evaluate(note)
    assert set(r.verified) == present
    assert r.satisfied == tree.holds(frozenset(present))
    assert not set(r.missing) & present
