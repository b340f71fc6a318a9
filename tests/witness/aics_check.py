"""Run under aics-witness's Python (.venv-witness): answers cosignature questions with aics-tlog, an independent
C2SP implementation. Reads a JSON list of jobs on stdin, writes a JSON list of answers on stdout.

- {"cmd": "sign", "seed": hex, "name", "timestamp", "origin", "size", "root": base64, "ext": [...]}
  -> {"line": "— name base64(...)\\n", "vkey": ...}: aics-tlog's sign_cosignature;
- {"cmd": "verify", "note": text, "log_vkey", "witness_vkeys": [...], "quorum": n}
  -> {"ok", "log_ok", "witnesses", "error"}: aics-tlog's verify_checkpoint.

With ``--vectors`` it prints tests/witness/testdata/cosignatures.json instead, made with aics-tlog
alone (the log's checkpoints, its signatures and the cosignatures):
``.venv-witness/bin/python tests/witness/aics_check.py --vectors > tests/witness/testdata/cosignatures.json``.

Not a test module: tests/witness/test_cosignature_interop.py runs it in a subprocess.
"""

import base64
import hashlib
import json
import sys

from aics_tlog import checkpoint, cosign, note
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def answer(job: dict) -> dict:
    if job["cmd"] == "sign":
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(job["seed"]))
        blob, sig = cosign.sign_cosignature(key, job["name"], job["timestamp"], job["origin"], job["size"],
                                            base64.b64decode(job["root"]), job.get("ext", []))
        line = f"\u2014 {sig.name} {base64.b64encode(sig.key_id + sig.signature).decode()}\n"
        vkey = note.format_vkey(cosign.cosignature_vkey(job["name"], key.public_key()))
        return {"line": line, "vkey": vkey}
    if job["cmd"] == "verify":
        r = checkpoint.verify_checkpoint(note.parse_note(job["note"]), note.parse_vkey(job["log_vkey"]),
                                         [note.parse_vkey(v) for v in job["witness_vkeys"]], job["quorum"])
        return {"ok": r.ok, "log_ok": r.log_ok, "witnesses": r.witnesses, "error": r.error,
                "timestamps": r.timestamps}
    raise SystemExit(f"unknown job {job['cmd']!r}")


# The vectors: tests/witness/witness_kit.ToyLog's log (origin, seed, leaves "entry N") and a test-only witness seed.
ORIGIN = "example.com/toy-log"
LOG_SEED = bytes(range(1, 33))
WITNESS_SEED = bytes(range(100, 132))
CHECKPOINTS = [(9, ()), (0, ()), (5, ("extension line one", "two"))]


def vectors() -> dict:
    from aics_tlog import MerkleTree

    tree = MerkleTree([b"entry %d" % i for i in range(9)])
    log_key = Ed25519PrivateKey.from_private_bytes(LOG_SEED)
    log_vkey = note.format_vkey(note.vkey_from_ed25519(ORIGIN, log_key.public_key().public_bytes_raw()))
    out = []
    for i, (size, ext) in enumerate(CHECKPOINTS):
        root = tree.root(size) if size else hashlib.sha256(b"").digest()
        cp = checkpoint.Checkpoint(ORIGIN, size, root, ext)
        signed = checkpoint.sign_checkpoint(cp, log_key, ORIGIN).serialise()
        job = {"cmd": "sign", "seed": WITNESS_SEED.hex(), "name": "aics.test/w1", "timestamp": 1_700_000_000 + i,
               "origin": ORIGIN, "size": size, "root": base64.b64encode(root).decode(), "ext": list(ext)}
        a = answer(job)
        out.append({"seed": job["seed"], "timestamp": job["timestamp"], "log_vkey": log_vkey,
                    "checkpoint_note": signed, "witness_vkey": a["vkey"], "cosignature_line": a["line"]})
    return {"made_by": "aics-tlog (aics-witness on PyPI) alone: tests/witness/aics_check.py --vectors",
            "vectors": out}


if __name__ == "__main__":
    if sys.argv[1:] == ["--vectors"]:
        print(json.dumps(vectors(), indent=2, ensure_ascii=False))
    else:
        json.dump([answer(j) for j in json.load(sys.stdin)], sys.stdout)
