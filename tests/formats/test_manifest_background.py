"""The training-loop API: hashing on a background thread, the manifest handed to a callback."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import pytest

from client.core.manifest import Manifest
from client.core.manifest.errors import WalkError
from client.hashing import HashConfig, hash_path
from client.hashing.background import BackgroundHasher, hash_in_background
from tests import test_manifest_support as kit


def test_callback_gets_the_manifest_on_another_thread(tmp_path: Path) -> None:
    root = kit.model_folder(tmp_path / "ckpt")
    got: list[tuple[Manifest, str]] = []
    done = threading.Event()

    def callback(m: Manifest) -> None:
        got.append((m, threading.current_thread().name))
        done.set()

    future = hash_in_background(str(root), callback, HashConfig(threads=1))
    assert done.wait(30)
    assert future.result() == got[0][0] == hash_path(str(root))
    assert got[0][1] != threading.current_thread().name


def _record(seen: list[str], name: str, _m: Manifest) -> None:
    seen.append(name)


def test_checkpoints_are_hashed_in_order_and_errors_reported(tmp_path: Path) -> None:
    roots = [kit.model_folder(tmp_path / f"step-{i}", seed=i) for i in range(3)]
    (tmp_path / "empty").mkdir()
    seen: list[str] = []
    errors: list[BaseException] = []
    with BackgroundHasher(HashConfig(threads=2)) as bg:
        futures = [bg.submit(str(r), partial(_record, seen, r.name)) for r in roots]
        bad = bg.submit(str(tmp_path / "empty"), lambda m: None, on_error=errors.append)
    assert seen == ["step-0", "step-1", "step-2"]
    assert len({f.result() for f in futures}) == 3
    assert isinstance(errors[0], WalkError)
    with pytest.raises(WalkError):
        bad.result()
