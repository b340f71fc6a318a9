"""The whole registry story in under a minute: ``make demo`` (or ``python deploy/demo.py [WORKDIR]``).

Starts a ledger (gRPC, and the web explorer over HTTP), registers two labs, an auditor, a
dataset and a small model family (generated safetensors weights: a base model, a fine-tuned
child, a quantized grandchild), shows the lineage, compares the child with the base and logs the
verdict as a signed descent-test attestation, writes a court bundle, verifies it offline and
writes the court report (report.html, report.pdf) of it with the attestation attached. It ends by
printing the explorer's address: with a terminal on stdin the ledger keeps running until Enter or
Ctrl-C, otherwise it is stopped. Every step is a ``provenance`` command, printed before it runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write ``tensors`` in the safetensors layout: u64 header length, JSON header, raw little-endian data."""
    dtypes = {np.dtype("float32"): "F32", np.dtype("int8"): "I8", np.dtype("float16"): "F16"}
    header: dict[str, object] = {"__metadata__": {"generator": "provenance-ledger demo"}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder("<"), copy=False)
        raw = arr.tobytes()
        span = [offset, offset + len(raw)]
        header[name] = {"dtype": dtypes[arr.dtype], "shape": list(arr.shape), "data_offsets": span}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def base_weights(seed: int = 7, width: int = 128, layers: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {f"layers.{i}.weight": rng.standard_normal((width, width), dtype=np.float32) for i in range(layers)}
    out["embed.weight"] = rng.standard_normal((512, width), dtype=np.float32)
    return out


def fine_tune(weights: dict[str, np.ndarray], seed: int = 8, scale: float = 0.01) -> dict[str, np.ndarray]:
    """Nudge the last layer only, as a light fine-tune would (the others stay byte-identical)."""
    rng = np.random.default_rng(seed)
    out = dict(weights)
    last = sorted(k for k in weights if k.startswith("layers."))[-1]
    out[last] = weights[last] + scale * rng.standard_normal(weights[last].shape, dtype=np.float32)
    return out


def quantize(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Symmetric per-tensor int8 quantization (scales kept as float32 tensors)."""
    out: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        scale = float(np.abs(w).max()) / 127 or 1.0
        out[name] = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        out[name + ".scale"] = np.array([scale], dtype=np.float32)
    return out


def write_dataset(folder: Path, shards: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        lines = [json.dumps({"text": f"document {i}-{j}: the quick brown fox"}) for j in range(200)]
        (folder / f"shard-{i:05d}.jsonl").write_text("\n".join(lines) + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.server = f"127.0.0.1:{free_port()}"
        self.http = f"127.0.0.1:{free_port()}"
        self.env = {**os.environ, "PROVENANCE_STATE_DIR": str(work / "state"), "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None

    def run(self, *args: str, check: bool = True) -> str:
        shown = " ".join(shlex.quote(a.replace(str(self.work) + "/", "")) for a in args)
        print(f"\n$ provenance {shown}", flush=True)
        done = subprocess.run([sys.executable, "-m", "client.cli", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True)
        out = done.stdout + done.stderr
        print(out.rstrip(), flush=True)
        if check and done.returncode != 0:
            raise SystemExit(f"demo step failed with exit code {done.returncode}")
        return done.stdout

    def start(self) -> None:
        print(f"$ provenance serve --data data --listen {self.server} --http {self.http} &", flush=True)
        cmd = [sys.executable, "-m", "client.cli", "serve", "--data", str(self.work / "data"), "--listen", self.server,
               "--http", self.http]
        with open(self.work / "serve.log", "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = subprocess.run([sys.executable, "-m", "client.cli", "checkpoint", "--server", self.server],
                                  cwd=REPO, env=self.env, capture_output=True)
            if done.returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit("the ledger did not start; see serve.log")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            print("\n$ kill -TERM <ledger>   # drains and stops", flush=True)
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


def finish(d: Demo, work: Path, began: float) -> None:
    """End by printing the explorer's address. With a terminal on stdin the ledger (and its explorer)
    keeps running until Enter or Ctrl-C; otherwise (CI, a pipe) it is stopped first."""
    interactive = sys.stdin is not None and sys.stdin.isatty()
    if not interactive:
        d.stop()
    print(f"\ndemo finished in {time.monotonic() - began:.1f} s")
    print(f"court report: {work / 'report.html'} and {work / 'report.pdf'}")
    if not interactive:
        print(f"explorer: http://{d.http}/ (stopped: stdin is not a terminal; run make demo in one to browse it)")
        return
    print(f"explorer: http://{d.http}/  (press Enter or Ctrl-C to stop the ledger)", flush=True)
    try:
        sys.stdin.readline()
    except KeyboardInterrupt:
        pass
    finally:
        d.stop()


def main(argv: list[str]) -> int:
    began = time.monotonic()
    work = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="provenance-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"demo workspace: {work}")
    write_dataset(work / "web-corpus")
    base = base_weights()
    child = fine_tune(base)
    write_safetensors(work / "models/base/model.safetensors", base)
    write_safetensors(work / "models/chat/model.safetensors", child)
    write_safetensors(work / "models/chat-int8/model.safetensors", quantize(child))
    d = Demo(work)
    d.start()
    try:
        server = ["--server", d.server]
        for who in ("lab-a", "lab-b", "auditor"):
            d.run("keygen", "--out", str(work / f"{who}.key"))
            d.run("identity", "register", who, "--key", str(work / f"{who}.key"), *server)
        d.run("register", "dataset", str(work / "web-corpus"), "--name", "web-corpus", "--version", "2024-06",
              "--license", "CC-BY-4.0", "--source", "a small generated crawl",
              "--key", str(work / "lab-a.key"), *server)
        d.run("register", "checkpoint", str(work / "models/base"), "--name", "base", "--step", "1000",
              "--dataset", "web-corpus@2024-06:pretraining", "--key", str(work / "lab-a.key"), *server)
        d.run("register", "checkpoint", str(work / "models/chat"), "--name", "chat", "--step", "10",
              "--parent", "base@1000:fine-tune", "--key", str(work / "lab-b.key"), *server)
        out = d.run("register", "checkpoint", str(work / "models/chat-int8"), "--name", "chat-int8", "--step", "10",
                    "--parent", "chat@10:quantization", "--key", str(work / "lab-b.key"), "--json", *server)
        grandchild = json.loads(out)["id"]
        d.run("lineage", grandchild, *server)
        out = d.run("compare", str(work / "models/chat"), str(work / "models/base"), "--attest",
                    "--key", str(work / "auditor.key"), "--evidence-out", str(work / "evidence.json"), *server)
        found = re.search(r"record ([0-9a-f]{64}) at index", out)
        if found is None:
            raise SystemExit("compare --attest printed no attestation record")
        d.run("prove", grandchild, "--lineage-to", "base@1000", "-o", str(work / "bundle.json"), *server)
        d.run("prove", found.group(1), "-o", str(work / "attestation.json"), *server)
        key = d.run("log-key", *server).strip()
        (work / "log.pub").write_text(key + "\n")
        print("\n# what follows needs no network: the bundles, the evidence file and the log's public key")
        d.run("verify", str(work / "bundle.json"), "--log-key", str(work / "log.pub"))
        d.run("report", str(work / "bundle.json"), "--log-key", str(work / "log.pub"),
              "--attestation", str(work / "attestation.json"), "--evidence", str(work / "evidence.json"),
              "-o", str(work / "report.html"), "--pdf", str(work / "report.pdf"))
    except BaseException:
        d.stop()
        raise
    finish(d, work, began)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
