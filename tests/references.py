"""Outside reference implementations the interop tests run against.

On a developer's machine a missing reference skips its test with the reason.
Under CI (``CI=true``, set by the CI runner; ``.ci/run`` installs every
reference first) a missing reference is a failure: interop is proved on every
landing, never assumed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

GOPATH_DEBIAN = Path("/usr/share/gocode")


def _missing(what: str, how: str) -> None:
    reason = f"{what} is not installed ({how})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI requires the outside reference: {reason}", pytrace=False)
    pytest.skip(reason)


def require_b3sum() -> str:
    """Path of Debian's ``b3sum``, the BLAKE3 reference."""
    path = shutil.which("b3sum")
    if path is None:
        _missing("b3sum", "apt-get install b3sum")
    assert path is not None
    return path


def require_go_sumdb() -> tuple[str, Path]:
    """``go`` and the GOPATH holding golang.org/x/mod/sumdb (Debian golang-golang-x-mod-dev)."""
    go = shutil.which("go")
    if go is None:
        _missing("go", "apt-get install golang-go")
    if not (GOPATH_DEBIAN / "src/golang.org/x/mod/sumdb/note").is_dir():
        _missing("golang.org/x/mod/sumdb", "apt-get install golang-golang-x-mod-dev")
    assert go is not None
    return go, GOPATH_DEBIAN


def require_model_signing() -> None:
    """The OpenSSF ``model-signing`` package (PyPI)."""
    if importlib.util.find_spec("model_signing") is None:
        _missing("model-signing", "pip install model-signing")


def require_torch() -> object:
    """PyTorch (``torch.save`` writes the reference .pt files our restricted reader must read).

    Not a dependency of the project; ``.ci/run`` installs the CPU build.
    """
    if importlib.util.find_spec("torch") is None:
        _missing("torch", "pip install torch (the CPU build is enough)")
    import torch

    return torch
