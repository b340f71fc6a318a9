"""The registry commands over TLS and mutual TLS, against a real ``provenance serve`` process.

Certificates come from the test PKI of ``tests/grpc/test_tls.py``. Every command that takes ``--server`` must
take the same TLS flags (``client/cli/_connect.py``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from client.cli import build_parser
from client.remote import TlsOptions
from tests.cli_kit import cli
from tests.grpc import test_tls
from tests.servers import ServerProcess

pytestmark = pytest.mark.slow

EXIT_UNAVAILABLE = 4
TLS_FLAGS = {"--tls", "--tls-ca", "--tls-cert", "--tls-key"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> test_tls.Pki:
    ca = test_tls.CA("test CA")
    return test_tls.Pki(tmp_path_factory.mktemp("pki"), ca, ca.issue("localhost", server=True),
                        ca.issue("client", server=False), test_tls.CA("other CA").issue("stranger", server=False))


@contextmanager
def tls_server(data: Path, pki: test_tls.Pki, mtls: bool) -> Iterator[ServerProcess]:
    """A ``provenance serve`` speaking TLS (mutual with ``mtls``), waited for over TLS."""
    files = pki.server_files(mtls)
    args = ["--tls-cert", str(files["tls_cert"]), "--tls-key", str(files["tls_key"])]
    if mtls:
        args += ["--client-ca", str(files["client_ca"])]
    srv = ServerProcess(data, args)
    srv.start(tls=TlsOptions(ca=pki.ca.pem, cert=pki.client.cert, key=pki.client.key))
    try:
        yield srv
    finally:
        srv.kill()


@pytest.mark.parametrize("mtls", [False, True], ids=["tls", "mtls"])
def test_register_and_show_over_tls(pki: test_tls.Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    mtls: bool) -> None:
    ca = pki.write("ca.pem", pki.ca.pem, 0o644)
    flags = ["--tls-ca", str(ca)]
    if mtls:
        flags += ["--tls-cert", str(pki.write("client.pem", pki.client.cert, 0o644)),
                  "--tls-key", str(pki.write("client.key", pki.client.key))]
    key, state = tmp_path / "lab.key", tmp_path / "state.json"
    cli(capsys, "keygen", "--out", str(key))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "data.bin").write_bytes(b"\x02" * 3000)
    with tls_server(tmp_path / "data", pki, mtls) as srv:
        s = ["--server", srv.address, *flags]
        ident = json.loads(cli(capsys, "identity", "register", "lab", "--key", str(key), "--json", *s))
        ds = json.loads(cli(capsys, "register", "dataset", str(tmp_path / "d"), "--name", "web", "--key", str(key),
                            "--json", *s))
        shown = json.loads(cli(capsys, "show", "web@1", "--state", str(state), "--json", *s))
        assert shown["id"] == ds["id"] and shown["index"] == ds["index"] == ident["index"] + 1
        assert shown["signer"] == {"name": "lab", "status": "active"}
        assert shown["included_in_tree_size"] == 2  # proved over the same TLS connection flags
        out = cli(capsys, "prove", "@0", "-o", str(tmp_path / "b.json"), "--state", str(state), *s)
        assert "verified against log key" in out
        assert "identity" in cli(capsys, "lineage", "@0", *s)
        # Without the flags (plaintext), or on mTLS without a client certificate, the server is unreachable.
        cli(capsys, "show", "@0", "--state", str(state), "--server", srv.address, code=EXIT_UNAVAILABLE)
        if mtls:
            cli(capsys, "show", "@0", "--state", str(state), "--server", srv.address, "--tls-ca", str(ca),
                code=EXIT_UNAVAILABLE)


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
            ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every runnable command: (its words, its parser)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaves(child, (*path, name))


def test_every_command_that_takes_a_server_takes_the_tls_flags() -> None:
    servers = 0
    for name, parser in _leaves(build_parser()):
        flags = {s for a in parser._actions for s in a.option_strings}
        if "--server" in flags and name != "serve":
            servers += 1
            assert flags >= TLS_FLAGS, f"provenance {name} takes --server but not {sorted(TLS_FLAGS - flags)}"
    assert servers >= 20  # the log, registry, match and compare commands
