"""Threaded compare (used from THREADS_FROM candidate pairs) gives exactly the serial answer.

The screen and the full tests run in threads on large models; the full tests run several at a
time and those past the early-stop point are dropped. These tests force threads on small models
and check that the whole JSON answer, the tested count and the evidence order included, is the
one a plain loop gives.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from client.core.descent import compare as compare_mod
from client.core.descent.fingerprint import build
from tests.descent_fixtures import Model, base_model, noisy, permute_hidden


def _answers(a: Model, b: Model, monkeypatch: pytest.MonkeyPatch, threads: int) -> tuple[dict, dict]:
    fa, fb = build(a.items()), build(b.items())
    serial = compare_mod.compare(fa, fb).to_json()
    with monkeypatch.context() as m:
        calls: list[int] = []
        real: Callable[[int], int] = compare_mod._threads
        m.setattr(compare_mod, "_threads", lambda n: calls.append(n) or threads)
        threaded = compare_mod.compare(fa, fb).to_json()
        assert calls, "compare did not ask how many threads to use"
        assert real(compare_mod.THREADS_FROM - 1) == 1
    return serial, threaded


@pytest.mark.parametrize("threads", [2, 3])
def test_threaded_related_compare_equals_serial(threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    a = base_model(0)
    serial, threaded = _answers(a, noisy(permute_hidden(a, seed=5), 0.05), monkeypatch, threads)
    assert serial["verdict"] == "related"
    assert serial["tested_pairs"] < serial["candidate_pairs"]  # the early stop happened
    assert threaded == serial


def test_threaded_independent_compare_equals_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    serial, threaded = _answers(base_model(0), base_model(1), monkeypatch, 3)
    assert serial["verdict"] == "independent"
    assert threaded == serial
