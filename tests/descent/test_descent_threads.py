"""Threaded compare (the edge's parallel map, used from THREADS_FROM candidate pairs) gives exactly
the serial answer.

The screen and the full tests run in threads on large models; the full tests run several at a
time and those past the early-stop point are dropped. These tests lower THREADS_FROM so that small
models take the threaded path, and check that the whole JSON answer, the tested count and the
evidence order included, is the one a plain loop gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from client.core.descent import compare as compare_mod
from client.core.descent.fingerprint import build
from tests.descent_fixtures import Model, base_model, noisy, permute_hidden


def _answers(a: Model, b: Model, monkeypatch: pytest.MonkeyPatch, threads: int) -> tuple[dict, dict]:
    fa, fb = build(a.items()), build(b.items())
    serial = compare_mod.compare(fa, fb).to_json()
    calls: list[int] = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        def pmap(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
            calls.append(len(items))
            return list(pool.map(fn, items))

        unused = compare_mod.compare(fa, fb, parallel=(pmap, threads)).to_json()
        assert not calls and unused == serial  # below THREADS_FROM the parallel map is not used
        monkeypatch.setattr(compare_mod, "THREADS_FROM", 0)
        threaded = compare_mod.compare(fa, fb, parallel=(pmap, threads)).to_json()
    assert calls, "the threaded path never used the parallel map"
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
