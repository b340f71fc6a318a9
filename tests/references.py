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


REPO = Path(__file__).resolve().parent.parent


def require_postgres() -> Path:
    """The directory of PostgreSQL 15's server programs (``initdb``, ``pg_ctl``, ``postgres``; Debian ``postgresql``).

    Debian keeps them in ``/usr/lib/postgresql/15/bin``, off PATH; PATH is the fallback.
    """
    for d in (Path("/usr/lib/postgresql/15/bin"), *(Path(p) for p in os.environ.get("PATH", "").split(os.pathsep))):
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file() and (d / "postgres").is_file():
            return d
    _missing("PostgreSQL 15 server", "apt-get install postgresql")
    raise AssertionError("unreachable")


def require_nginx() -> str:
    """Debian's ``nginx``, serving a ``--tiles-dir`` as any web server would."""
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)
    if path is None:
        _missing("nginx", "apt-get install nginx")
    assert path is not None
    return path


def require_chromium() -> tuple[str, str]:
    """Debian's headless ``chromium`` and its ``chromedriver`` (packages chromium, chromium-driver)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        _missing("chromium and chromedriver", "apt-get install chromium chromium-driver")
    assert browser is not None and driver is not None
    return browser, driver


def require_pdftotext() -> str:
    """poppler's ``pdftotext`` (Debian poppler-utils): a PDF's text must be searchable."""
    path = shutil.which("pdftotext")
    if path is None:
        _missing("pdftotext", "apt-get install poppler-utils")
    assert path is not None
    return path


def require_aics_witness() -> str:
    """The ``aics-witness`` command: an independent C2SP tlog-witness (PyPI; needs Python >= 3.12).

    ``.ci/run`` installs it into ``.venv-witness``; ``AICS_WITNESS`` or PATH may name another.
    """
    for candidate in (os.environ.get("AICS_WITNESS"), str(REPO / ".venv-witness/bin/aics-witness"),
                      shutil.which("aics-witness")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    _missing("aics-witness", "python3.12 -m venv .venv-witness && .venv-witness/bin/pip install aics-witness")
    raise AssertionError("unreachable")
