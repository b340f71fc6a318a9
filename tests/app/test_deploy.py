"""Lint deploy/: what can be checked without a container engine or a cluster (see deploy/README.md).

YAML parses; the Kubernetes objects and the Compose service have the fields they need and
agree with each other; every file the Dockerfile copies exists; the server flags each
deployment passes are accepted by the real ``provenance`` parser; the container health
probe works against a real server; the systemd unit passes ``systemd-analyze verify`` and
scores "OK" in ``systemd-analyze security`` (skipped, with the reason, without systemd).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from client.cli import build_parser
from ledger.app.config import ServerConfig
from ledger.grpc.log_service import SERVICE_NAME
from tests.servers import REPO, free_port, running_server

DEPLOY = REPO / "deploy"
DATA_DIR = "/var/lib/provenance"
PORT = 50051
METRICS = 9464
DRAIN = ServerConfig().drain_seconds


def _serve_flags(args: list[str]) -> dict[str, Any]:
    """Parse ``provenance serve ARGS`` with the real CLI parser (SystemExit on an unknown flag)."""
    ns = build_parser().parse_args(["serve", *args])
    return vars(ns)


def _docs(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert all(isinstance(d, dict) for d in docs), f"{path}: every document must be a mapping"
    return docs


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert len(files) >= 4
    for path in files:
        _docs(path)


# ------------------------------------------------------------------ Kubernetes


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    kust = _docs(DEPLOY / "kubernetes" / "kustomization.yaml")[0]
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for name in kust["resources"]:
        for doc in _docs(DEPLOY / "kubernetes" / name):
            for key in ("apiVersion", "kind", "metadata"):
                assert key in doc, f"{name}: object without {key}"
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_statefulset_is_one_non_root_writer_on_a_volume(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    sts = k8s[("StatefulSet", "provenance-ledger")]
    assert sts["apiVersion"] == "apps/v1"
    spec = sts["spec"]
    assert spec["replicas"] == 1, "one log, one writer"
    pod = spec["template"]
    assert _matches(spec["selector"]["matchLabels"], pod["metadata"]["labels"])
    headless = k8s[("Service", spec["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    assert pod["spec"]["terminationGracePeriodSeconds"] > DRAIN
    psc = pod["spec"]["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0 and psc["fsGroup"] != 0
    (container,) = pod["spec"]["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    flags = _serve_flags(container["args"])
    assert str(flags["data"]) == DATA_DIR and flags["listen"].endswith(f":{PORT}")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": PORT, "metrics": METRICS}
    assert flags["metrics_listen"] == f"0.0.0.0:{METRICS}" and flags["log_format"] == "json"
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(METRICS) and annotations["prometheus.io/path"] == "/metrics"
    claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
    volumes = {v["name"] for v in pod["spec"].get("volumes", [])} | claims
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert set(mounts.values()) <= volumes
    assert mounts[DATA_DIR] in claims, "the data directory must be on the persistent volume"
    for claim in spec["volumeClaimTemplates"]:
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert re.fullmatch(r"\d+[GMT]i", claim["spec"]["resources"]["requests"]["storage"])


def test_probes_use_the_grpc_health_service(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    (container,) = k8s[("StatefulSet", "provenance-ledger")]["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == PORT, probe
    assert container["readinessProbe"]["grpc"]["service"] == SERVICE_NAME
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, "RocksDB may take a while to open"


def test_services_select_the_pod_and_route_grpc(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    labels = k8s[("StatefulSet", "provenance-ledger")]["spec"]["template"]["metadata"]["labels"]
    services = [obj for (kind, _), obj in k8s.items() if kind == "Service"]
    assert len(services) == 2
    for svc in services:
        assert svc["apiVersion"] == "v1"
        assert _matches(svc["spec"]["selector"], labels)
        ports = {p["targetPort"]: p["port"] for p in svc["spec"]["ports"]}
        assert ports["grpc"] == PORT and set(ports) <= {"grpc", "metrics"}


def test_kubectl_kustomize_renders_the_objects(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the manifests were only parsed")
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    rendered = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(out.stdout) if d}
    assert rendered == set(k8s)


# ------------------------------------------------------------------ Compose


def test_compose_service_builds_the_image_and_keeps_data_on_a_volume() -> None:
    compose = _docs(DEPLOY / "compose" / "compose.yaml")[0]
    svc = compose["services"]["ledger"]
    context = (DEPLOY / "compose" / svc["build"]["context"]).resolve()
    assert context == REPO
    assert (context / svc["build"]["dockerfile"]).is_file()
    flags = _serve_flags(svc["command"])
    assert str(flags["data"]) == DATA_DIR
    (volume,) = svc["volumes"]
    name, path = volume.split(":")
    assert path == DATA_DIR and name in compose["volumes"], "the log must live on a named volume"
    assert svc["ports"] == [f"127.0.0.1:{PORT}:{PORT}", f"127.0.0.1:{METRICS}:{METRICS}"], "loopback only"
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in svc["security_opt"]
    assert svc["user"].split(":")[0] != "0"
    assert int(svc["stop_grace_period"].rstrip("s")) > DRAIN
    assert "healthcheck.py" in " ".join(svc["healthcheck"]["test"])


# ------------------------------------------------------------------ Dockerfile


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#") and not pending:
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            if word:
                out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def test_dockerfile_copies_files_that_exist_and_runs_as_non_root() -> None:
    dockerfile = DEPLOY / "docker" / "Dockerfile"
    ins = _instructions(dockerfile)
    kinds = [k for k, _ in ins]
    assert kinds.count("FROM") == 2, "a build stage and a clean runtime stage"
    copied: list[str] = []
    for kind, args in ins:
        if kind == "COPY" and not args.startswith("--from="):
            *sources, _dest = shlex.split(args)
            copied += sources
    assert {"pyproject.toml", "client", "ledger"} <= set(copied)
    for src in copied:
        assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    for src in copied:  # the ignore file excludes everything, then lets these back in
        assert f"!{src}" in ignore, f"{src} is excluded from the build context"
    user = [a for k, a in ins if k == "USER"][-1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), "run as a numeric non-root uid:gid"
    assert [a for k, a in ins if k == "VOLUME"] == [json.dumps([DATA_DIR])]
    assert [a for k, a in ins if k == "EXPOSE"] == [f"{PORT} {METRICS}"]
    assert [a for k, a in ins if k == "STOPSIGNAL"] == ["SIGTERM"]
    health = [a for k, a in ins if k == "HEALTHCHECK"][0]
    assert "/opt/provenance/healthcheck.py" in health
    entry = json.loads([a for k, a in ins if k == "ENTRYPOINT"][0])
    cmd = json.loads([a for k, a in ins if k == "CMD"][0])
    assert entry == ["provenance", "serve"]
    flags = _serve_flags(cmd)
    assert str(flags["data"]) == DATA_DIR and flags["listen"] == f"0.0.0.0:{PORT}"
    assert flags["metrics_listen"] == f"0.0.0.0:{METRICS}"


def test_health_probe_against_a_real_server(tmp_path: Path) -> None:
    probe = [sys.executable, str(DEPLOY / "docker" / "healthcheck.py")]
    with running_server(tmp_path / "data") as srv:
        ok = subprocess.run([*probe, srv.address], capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
        named = subprocess.run([*probe, srv.address, SERVICE_NAME], capture_output=True, text=True, timeout=30)
        assert named.returncode == 0, named.stderr
        unknown = subprocess.run([*probe, srv.address, "no.such.Service"], capture_output=True, text=True,
                                 timeout=30)
        assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
        assert srv.stop() == 0
        gone = subprocess.run([*probe, srv.address], capture_output=True, text=True, timeout=30)
        assert gone.returncode == 1 and "UNAVAILABLE" in gone.stderr
    closed = subprocess.run([*probe, f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=30)
    assert closed.returncode == 1


# ------------------------------------------------------------------ systemd


UNIT = DEPLOY / "systemd" / "provenance-ledger.service"


def _unit_values(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text(encoding="utf-8").splitlines()
            if line.startswith(key + "=")]


def test_unit_runs_serve_with_known_flags_and_hardening() -> None:
    (exec_start,) = _unit_values("ExecStart")
    binary, command, *args = shlex.split(exec_start)
    assert command == "serve" and binary.endswith("/provenance")
    flags = _serve_flags(args)
    (state,) = _unit_values("StateDirectory")
    assert str(flags["data"]) == f"/var/lib/{state}"
    assert _unit_values("ReadWritePaths") == [f"/var/lib/{state}"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "CapabilityBoundingSet": "", "UMask": "0077"}.items():
        assert _unit_values(key) == [value], key
    assert _unit_values("User") and _unit_values("User") != ["root"]
    assert float(_unit_values("TimeoutStopSec")[0]) > DRAIN


@pytest.fixture
def runnable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at this checkout's ``provenance`` (verify checks it exists)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here; the unit was only checked as text")
    local = Path(sys.executable).parent / "provenance"
    if not local.exists():
        pytest.skip(f"{local} is missing (package not installed into this venv)")
    text = UNIT.read_text(encoding="utf-8").replace("/opt/provenance-ledger/bin/provenance", str(local))
    path = tmp_path / UNIT.name
    path.write_text(text, encoding="utf-8")
    return path


def test_systemd_analyze_verify(runnable_unit: Path) -> None:
    out = subprocess.run(["systemd-analyze", "verify", str(runnable_unit)], capture_output=True, text=True,
                         timeout=60)
    complaints = [line for line in (out.stdout + out.stderr).splitlines() if runnable_unit.name in line]
    assert out.returncode == 0 and not complaints, out.stdout + out.stderr


def test_systemd_analyze_security_scores_ok(runnable_unit: Path) -> None:
    # --threshold is on the 0-100 scale systemd prints as 0.0-10.0: 20 means "exposure above 2.0 fails".
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20", str(runnable_unit)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    assert "Overall exposure level" in out.stdout


# ------------------------------------------------------------------ docs/guarantees.md


def test_every_test_named_in_the_guarantees_exists() -> None:
    """Each promise names its tests as ``tests/file.py::test`` (``::test`` belongs to the last file named)."""
    text = (REPO / "docs" / "guarantees.md").read_text(encoding="utf-8")
    named: list[tuple[str, str]] = []
    last: str | None = None
    for m in re.finditer(r"(tests/(?:\w+/)?test_\w+\.py)?(?:::(test_\w+\*?))?", text):
        last = m.group(1) or last
        if m.group(2):
            assert last is not None, f"::{m.group(2)} before any test file is named"
            named.append((last, m.group(2)))
    assert len(named) >= 25
    for file, name in named:
        source = (REPO / file).read_text(encoding="utf-8")
        pattern = rf"def {name.rstrip('*')}" + (r"\w*\(" if name.endswith("*") else r"\(")
        assert re.search(pattern, source), f"docs/guarantees.md names {file}::{name}, which does not exist"


# ------------------------------------------------------------------ PostgreSQL with two frontends (issue 14)

PG_DSN_PREFIX = "postgresql://provenance@"


def _no_password(dsn: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    assert "password" not in conninfo_to_dict(dsn), "the DSN names no password (libpq reads PGPASSWORD)"


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def test_compose_postgres_runs_two_frontends_on_one_database_and_one_key() -> None:
    compose = _docs(DEPLOY / "compose" / "compose.postgres.yaml")[0]
    services = compose["services"]
    pg = services["postgres"]
    assert pg["image"].split(":")[1].split(".")[0] >= "15"
    assert any(v.endswith(":/var/lib/postgresql/data") and v.split(":")[0] in compose["volumes"] for v in pg["volumes"])
    assert "pg_isready" in pg["healthcheck"]["test"]
    migrate = services["migrate"]
    assert migrate["entrypoint"][:3] == ["provenance", "db", "migrate"]
    migrate_flags = vars(build_parser().parse_args(["db", "migrate", *migrate["command"]]))
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    fronts = [s for name, s in services.items() if name.startswith("ledger-")]
    assert len(fronts) == 2
    stores, keys, origins, host_ports = set(), set(), set(), []
    for svc in fronts:
        context = (DEPLOY / "compose" / svc["build"]["context"]).resolve()
        assert context == REPO and (context / svc["build"]["dockerfile"]).is_file()
        flags = _serve_flags(svc["command"])
        stores.add(flags["store"])
        keys.add(str(flags["key"]))
        origins.add(flags["origin"])
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "PGPASSWORD" in svc["environment"]
        assert str(flags["key"]) == f"/run/secrets/{svc['secrets'][0]}" and svc["secrets"][0] in compose["secrets"]
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"] and svc["user"].split(":")[0] != "0"
        assert int(svc["stop_grace_period"].rstrip("s")) > DRAIN
        host_ports += [p.rsplit(":", 2)[1] for p in svc["ports"]]
        assert all(p.startswith("127.0.0.1:") for p in svc["ports"]), "loopback only"
    (store,) = stores
    assert store == migrate_flags["store"] and store.startswith(PG_DSN_PREFIX + "postgres:5432/")
    _no_password(store)
    assert len(keys) == 1 and len(origins) == 1, "every frontend: one store, one key, one origin"
    assert len(set(host_ports)) == len(host_ports)


@pytest.fixture(scope="module")
def k8s_pg() -> dict[tuple[str, str], dict[str, Any]]:
    root = DEPLOY / "kubernetes" / "postgres"
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for name in _docs(root / "kustomization.yaml")[0]["resources"]:
        for doc in _docs(root / name):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def test_kubernetes_postgres_runs_two_frontends_with_the_key_from_a_secret(
        k8s_pg: dict[tuple[str, str], dict[str, Any]]) -> None:
    pg = k8s_pg[("StatefulSet", "provenance-postgres")]
    (db,) = pg["spec"]["template"]["spec"]["containers"]
    assert db["image"] == "postgres:15"
    assert {c["metadata"]["name"] for c in pg["spec"]["volumeClaimTemplates"]} == {
        m["name"] for m in db["volumeMounts"] if m["mountPath"].startswith("/var/lib/postgresql")}
    pg_svc = k8s_pg[("Service", "provenance-postgres")]
    assert _matches(pg_svc["spec"]["selector"], pg["spec"]["template"]["metadata"]["labels"])
    front = k8s_pg[("Deployment", "provenance-ledger-frontend")]
    assert front["spec"]["replicas"] == 2
    pod = front["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    flags = _serve_flags(container["args"])
    assert flags["store"].startswith(f"{PG_DSN_PREFIX}{pg_svc['metadata']['name']}:5432/")
    _no_password(flags["store"])
    assert _env(container)["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "provenance-postgres"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    key_dir = str(Path(str(flags["key"])).parent)
    (key_mount,) = [m for m in mounts.values() if m["mountPath"] == key_dir]
    secret = volumes[key_mount["name"]]["secret"]
    assert key_mount["readOnly"] is True and secret["defaultMode"] & 0o077 == 0, "a key no one else can read"
    (data_mount,) = [m for m in mounts.values() if m["mountPath"] == str(flags["data"])]
    assert "emptyDir" in volumes[data_mount["name"]], "a frontend keeps no state of its own"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["readinessProbe"]["grpc"]["service"] == SERVICE_NAME
    svc = k8s_pg[("Service", "provenance-ledger-frontend")]
    assert _matches(svc["spec"]["selector"], pod["metadata"]["labels"])
    pdb = k8s_pg[("PodDisruptionBudget", "provenance-ledger-frontend")]
    assert pdb["spec"]["minAvailable"] == 1
    assert _matches(pdb["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    job = k8s_pg[("Job", "provenance-ledger-migrate")]
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["provenance", "db", "migrate"]
    assert vars(build_parser().parse_args(["db", "migrate", *migrate["args"]]))["store"] == flags["store"]
