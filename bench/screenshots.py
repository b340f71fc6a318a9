"""The README's screenshot of the explorer: ``make screenshots`` (``python -m bench.screenshots [OUT_DIR]``).

Starts a throwaway ledger (``provenance serve --http``) in a temporary directory, registers a small
story with the ``provenance`` CLI (two labs and an auditor, a dataset, a base model, a fine-tune, its
quantization, a ``compare --attest`` descent test of the fine-tune against the base, a dispute), and
has Debian's headless Chromium (``chromium --screenshot``) photograph the fine-tune's record page:
``docs/img/explorer.png``. The weights are generated (seeded), so a rerun draws the same page but
with new keys, ids and times. :func:`chromium_screenshot` is reusable for other pages (the report).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
WINDOW = (1280, 1180)


def chromium_screenshot(url: str, out: Path, window: tuple[int, int] = WINDOW) -> None:
    """Photograph ``url`` (an http:// or file:// address) with headless Chromium into the PNG ``out``."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("screenshots need Debian's chromium (apt-get install chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--force-device-scale-factor=1", f"--user-data-dir={profile}",
                        f"--window-size={window[0]},{window[1]}", f"--screenshot={out}", url],
                       check=True, capture_output=True, timeout=60)
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}", flush=True)


def _safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header: dict[str, Any] = {}
    blobs, offset = [], 0
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def _models(work: Path) -> None:
    rng = np.random.default_rng(16)
    base = {f"layers.{i}.mlp.weight": rng.standard_normal((96, 96), dtype=np.float32) for i in range(4)}
    base["embed.weight"] = rng.standard_normal((256, 96), dtype=np.float32)
    chat = {k: v + 0.05 * rng.standard_normal(v.shape, dtype=np.float32) for k, v in base.items()}
    q4 = {k: np.round(v * 8) / 8 for k, v in chat.items()}
    for name, tensors in (("base", base), ("chat", chat), ("chat-q4", q4)):
        _safetensors(work / f"{name}.safetensors", tensors)
    (work / "corpus").mkdir()
    for i in range(3):
        (work / "corpus" / f"shard-{i}.jsonl").write_text(
            "".join(json.dumps({"text": f"document {i}-{j}"}) + "\n" for j in range(100)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str) -> Any:
    from client.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    if code != 0:
        raise SystemExit(f"provenance {' '.join(args)} exited {code}: {out.getvalue()}")
    return json.loads(out.getvalue())


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the ledger exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"the ledger did not answer {url} within {timeout} s")


def explorer(out_dir: Path) -> None:
    """Register the story on a fresh ledger and photograph the fine-tune's record page."""
    with tempfile.TemporaryDirectory(prefix="provenance-screens-") as tmp:
        work = Path(tmp)
        _models(work)
        grpc_addr, http_port = f"127.0.0.1:{_free_port()}", _free_port()
        os.environ["PROVENANCE_STATE_DIR"] = str(work / "state")
        cmd = [sys.executable, "-m", "client.cli", "serve", "--data", str(work / "data"), "--listen", grpc_addr,
               "--http", f"127.0.0.1:{http_port}", "--origin", "ledger.example.org/demo"]
        with open(work / "serve.log", "wb") as log:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{http_port}"
            _wait(url + "/log", proc)
            s = ["--server", grpc_addr]
            keys = {}
            for who in ("example-lab", "chat-lab", "auditor"):
                keys[who] = str(work / f"{who}.key")
                with contextlib.redirect_stdout(io.StringIO()):
                    from client.cli import main

                    main(["keygen", "--out", keys[who]])
                for attempt in range(50):  # the gRPC side may answer a moment after the HTTP side
                    try:
                        _cli("identity", "register", who, "--key", keys[who], *s)
                        break
                    except SystemExit:
                        if attempt == 49:
                            raise
                        time.sleep(0.1)
            _cli("register", "dataset", str(work / "corpus"), "--name", "web-corpus", "--version", "2026-11",
                 "--license", "CC-BY-4.0", "--key", keys["example-lab"], *s)
            _cli("register", "checkpoint", str(work / "base.safetensors"), "--name", "mini-lm", "--step", "100000",
                 "--dataset", "web-corpus@2026-11:pretraining", "--key", keys["example-lab"], *s)
            chat = _cli("register", "checkpoint", str(work / "chat.safetensors"), "--name", "mini-lm-chat",
                        "--step", "2000", "--parent", "mini-lm@100000:fine-tune", "--key", keys["chat-lab"], *s)
            q4 = _cli("register", "checkpoint", str(work / "chat-q4.safetensors"), "--name", "mini-lm-chat-q4",
                      "--step", "2000", "--parent", "mini-lm-chat@2000:quantization", "--key", keys["chat-lab"], *s)
            _cli("compare", str(work / "chat.safetensors"), str(work / "base.safetensors"), "--attest",
                 "--key", keys["auditor"], *s)
            _cli("dispute", q4["id"], "--reason", "the q4 weights were not made from mini-lm-chat 2000",
                 "--key", keys["example-lab"], *s)
            chromium_screenshot(f"{url}/record/{chat['id']}", out_dir / "explorer.png")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def run(quick: bool) -> None:
    """``python -m bench screenshots``: the same as ``make screenshots``."""
    explorer(REPO / "docs" / "img")


if __name__ == "__main__":
    explorer(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "img")
