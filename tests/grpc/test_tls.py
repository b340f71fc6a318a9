"""TLS and mutual TLS with certificates generated here, and the rules that keep private keys private."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from client.errors import InvalidInputError, UnavailableError
from client.remote import LogClient, TlsOptions
from ledger.grpc.tls import TlsFileError, load_tls
from tests.fake_log import FakeLog
from tests.inproc import serving
from tests.servers import ServerProcess, free_port

NOW = datetime.datetime.now(datetime.UTC)


@dataclass
class Issued:
    cert: bytes
    key: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class CA:
    def __init__(self, cn: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(cn)
        self.cert = (
            x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(minutes=5)).not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, cn: str, *, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(minutes=5)).not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                  else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass
class Pki:
    dir: Path
    ca: CA
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate from a CA the server does not trust

    def write(self, name: str, data: bytes, mode: int = 0o600) -> Path:
        path = self.dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    def server_files(self, mtls: bool) -> dict[str, Path]:
        files = {"tls_cert": self.write("server.pem", self.server.cert, 0o644),
                 "tls_key": self.write("server.key", self.server.key)}
        if mtls:
            files["client_ca"] = self.write("ca.pem", self.ca.pem, 0o644)
        return files

    def client_tls(self, *, cert: Issued | None = None) -> TlsOptions:
        return TlsOptions(ca=self.ca.pem, cert=cert.cert if cert else None, key=cert.key if cert else None)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = CA("test CA")
    return Pki(tmp_path_factory.mktemp("pki"), ca, ca.issue("localhost", server=True),
               ca.issue("client", server=False), CA("other CA").issue("stranger", server=False))



@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[str]:
    log = FakeLog()
    with serving(log, **pki.server_files(mtls=False)) as (address, _):
        yield address


@pytest.fixture(scope="module")
def mtls_server(pki: Pki) -> Iterator[str]:
    log = FakeLog()
    with serving(log, **pki.server_files(mtls=True)) as (address, _):
        yield address


def test_tls_works(pki: Pki, tls_server: str) -> None:
    with LogClient(tls_server, timeout=5, tls=pki.client_tls()) as c:
        assert c.add_entries([b"over tls"]).entries[0].index >= 0
        assert c.checkpoint()
        assert c.serving()


def test_tls_by_name_localhost(pki: Pki, tls_server: str) -> None:
    port = tls_server.rpartition(":")[2]
    with LogClient(f"localhost:{port}", timeout=5, tls=pki.client_tls()) as c:
        assert c.checkpoint()


def test_plaintext_client_is_refused_by_tls_server(tls_server: str) -> None:
    with LogClient(tls_server, timeout=2) as c, pytest.raises(UnavailableError):
        c.checkpoint()


def test_client_that_does_not_trust_the_server_ca_is_refused(pki: Pki, tls_server: str) -> None:
    other = CA("not the server's CA")
    with LogClient(tls_server, timeout=2, tls=TlsOptions(ca=other.pem)) as c, pytest.raises(UnavailableError):
        c.checkpoint()


def test_mtls_without_client_certificate_is_refused(pki: Pki, mtls_server: str) -> None:
    with LogClient(mtls_server, timeout=2, tls=pki.client_tls()) as c, pytest.raises(UnavailableError):
        c.checkpoint()


def test_mtls_with_certificate_from_another_ca_is_refused(pki: Pki, mtls_server: str) -> None:
    tls = pki.client_tls(cert=pki.stranger)
    with LogClient(mtls_server, timeout=2, tls=tls) as c, pytest.raises(UnavailableError):
        c.checkpoint()


def test_mtls_with_client_certificate_works(pki: Pki, mtls_server: str) -> None:
    with LogClient(mtls_server, timeout=5, tls=pki.client_tls(cert=pki.client)) as c:
        assert c.add_entries([b"over mtls"]).entries[0].index >= 0


def test_plaintext_client_is_refused_by_mtls_server(mtls_server: str) -> None:
    with LogClient(mtls_server, timeout=2) as c, pytest.raises(UnavailableError):
        c.checkpoint()


def test_world_readable_tls_key_is_refused(pki: Pki) -> None:
    cert = pki.write("s2.pem", pki.server.cert, 0o644)
    key = pki.write("s2.key", pki.server.key, 0o644)
    with pytest.raises(TlsFileError, match=r"mode 0644; it must not be readable .* by others") as info:
        load_tls(cert, key)
    assert b"PRIVATE" not in str(info.value).encode()
    log = FakeLog()
    with pytest.raises(TlsFileError):
        serving(log, tls_cert=cert, tls_key=key).__enter__()
    os.chmod(key, 0o640)  # group-readable (a tls group, a k8s secret with defaultMode 0440/0640) is accepted
    assert load_tls(cert, key).private_key == pki.server.key


def test_tls_files_checked(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "x.pem"
    not_pem.write_bytes(b"hello")
    with pytest.raises(TlsFileError, match="not PEM"):
        load_tls(not_pem, pki.write("k.key", pki.server.key))
    with pytest.raises(TlsFileError, match="cannot open"):
        load_tls(tmp_path / "missing.pem", pki.write("k2.key", pki.server.key))
    material = load_tls(pki.write("c.pem", pki.server.cert, 0o644), pki.write("k3.key", pki.server.key))
    assert "PRIVATE" not in repr(material) and "hidden" in repr(material)
    assert "PRIVATE" not in repr(pki.client_tls(cert=pki.client))


def test_config_needs_cert_and_key_together() -> None:
    from ledger.app.config import ServerConfig

    with pytest.raises(InvalidInputError, match="both --tls-cert and --tls-key"):
        ServerConfig(tls_cert=Path("a.pem"))
    with pytest.raises(InvalidInputError, match="needs --tls-cert"):
        ServerConfig(client_ca=Path("ca.pem"))
    with pytest.raises(InvalidInputError):
        TlsOptions(cert=b"x")


# -- the whole command line: serve and a client command over mTLS ---------------------------------


def test_serve_and_cli_over_mtls(pki: Pki, tmp_path: Path) -> None:
    import subprocess
    import sys

    files = pki.server_files(mtls=True)
    ccert = pki.write("client.pem", pki.client.cert, 0o644)
    ckey = pki.write("client.key", pki.client.key)
    ca = files["client_ca"]
    srv = ServerProcess(tmp_path / "data", ["--tls-cert", str(files["tls_cert"]), "--tls-key", str(files["tls_key"]),
                                            "--client-ca", str(ca), "--log-format", "json"], port=free_port())
    tls = TlsOptions(ca=pki.ca.pem, cert=pki.client.cert, key=pki.client.key)
    srv.start(tls=tls)  # readiness asked over mTLS (the plaintext health probe cannot connect)
    try:
        with LogClient(srv.address, timeout=5, tls=tls) as c:  # the private key is never returned
            info = c.log_info()
            private = (srv.data_dir / "log.key").read_text().strip()
            assert info.verifier_key == (srv.data_dir / "log.pub").read_text().strip()
            assert "PRIVATE" not in info.verifier_key and private.rsplit("+", 1)[-1] not in repr(info)
            assert b"PRIVATE" not in c.checkpoint()
        assert (srv.data_dir / "log.key").stat().st_mode & 0o077 == 0
        base = [sys.executable, "-m", "client.cli"]
        tls_flags = ["--tls-ca", str(ca), "--tls-cert", str(ccert), "--tls-key", str(ckey)]
        out = subprocess.run([*base, "checkpoint", "--server", srv.address, *tls_flags],
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith((srv.data_dir / "origin").read_bytes())  # the origin line, kept in DATA/origin
        refused = subprocess.run([*base, "checkpoint", "--server", srv.address, "--tls-ca", str(ca)],
                                 capture_output=True, timeout=30)
        assert refused.returncode != 0
        plain = subprocess.run([*base, "checkpoint", "--server", srv.address], capture_output=True, timeout=30)
        assert plain.returncode != 0
        assert srv.stop() == 0
        text = srv.log_text()
        assert "PRIVATE" not in text
        lines = [json.loads(line) for line in text.splitlines()]  # gRPC core's handshake errors too
        assert any(line.get("transport") == "mtls" for line in lines)
    finally:
        srv.kill()


def test_world_readable_log_key_is_refused(tmp_path: Path) -> None:
    """The log's signing key must be private: a world-readable one stops the server with a clear error."""
    from client.core.note import Signer

    key = tmp_path / "log.key"
    key.write_text(Signer.generate("localhost/provenance-ledger").private_text() + "\n")
    os.chmod(key, 0o644)
    srv = ServerProcess(tmp_path / "data", ["--key", str(key)])
    with pytest.raises(RuntimeError, match="server exited"):
        srv.start(timeout=15)
    text = srv.log_text()
    assert "has mode 0644; it must not be readable or writable by group or others" in text
    assert "PRIVATE+KEY" not in text, "key material never reaches the log"


def test_serve_with_world_readable_tls_key_exits_before_opening_anything(pki: Pki, tmp_path: Path) -> None:
    import subprocess
    import sys

    cert = pki.write("s3.pem", pki.server.cert, 0o644)
    key = pki.write("s3.key", pki.server.key, 0o604)
    data = tmp_path / "data"
    out = subprocess.run([sys.executable, "-m", "client.cli", "serve", "--data", str(data), "--listen", "127.0.0.1:0",
                          "--tls-cert", str(cert), "--tls-key", str(key)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert f"TLS private key {key} has mode 0604" in out.stderr
    assert "PRIVATE" not in out.stderr
    assert not (data / "log.key").exists() and not (data / "log.rocksdb").exists()
