"""Hypothesis: random registrations (good and bad references, signers, names) against a simple model.

Invariants: a record is logged iff the model accepts it; refusals never change the log's size;
lineage and name queries agree with the model afterwards.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from registry_kit import Lab, open_env

from client.core.records import Kind
from client.errors import ProvenanceError
from ledger.log import Appended

# One step: (lab 0-2, model name 0-3, step 0-2, parent choice: None / index into accepted / a made-up id)
STEP = st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 2),
                 st.one_of(st.none(), st.integers(0, 50), st.just(-1)))


@settings(max_examples=25, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=25), st.sets(st.integers(0, 2), max_size=3))
def test_registry_matches_model(steps: list[tuple[int, int, int, int | None]], registered: set[int]) -> None:
    env = open_env()
    try:
        labs = [Lab(f"lab-{i}") for i in range(3)]
        for i in sorted(registered):
            (r,) = env.registry.register([labs[i].register()])
            assert isinstance(r, Appended)
        accepted: list[bytes] = []  # checkpoint ids in log order
        names: dict[tuple[str, str], bytes] = {}
        parents_of: dict[bytes, bytes | None] = {}
        for n, (lab_i, model_i, step, parent_choice) in enumerate(steps):
            lab, model = labs[lab_i], f"m{model_i}"
            if parent_choice is None:
                parent = None
            elif parent_choice == -1:
                parent = bytes([n % 256]) * 32  # never a real id
            else:
                parent = accepted[parent_choice % len(accepted)] if accepted else bytes(32)
            sub, signed = lab.checkpoint(model, step, parents=((parent, "fine-tune"),) if parent else (),
                                         seed=f"{n}")
            expect = (lab_i in registered and (model, str(step)) not in names
                      and (parent is None or parent in parents_of))
            before = env.log.size
            (r,) = env.registry.register([sub])
            if expect:
                assert isinstance(r, Appended), r
                accepted.append(signed.id)
                names[(model, str(step))] = signed.id
                parents_of[signed.id] = parent
                assert env.log.size == before + 1
            else:
                assert isinstance(r, ProvenanceError), r
                assert env.log.size == before
        reader = env.registry.reader
        for (model, version), rid in names.items():
            assert reader.by_name(Kind.CHECKPOINT, model, version).id == rid
        for rid, parent in parents_of.items():
            _, edges = reader.ancestors(rid, 1)
            assert [e.parent for e in edges] == ([parent] if parent else [])
            if parent:
                kids = {n.id for n in reader.descendants(parent, 1)[0]}
                assert rid in kids
    finally:
        env.close()
