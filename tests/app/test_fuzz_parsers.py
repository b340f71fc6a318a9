"""Hostile input to every parser: any bytes either parse or raise a ProvenanceError, never anything else, never hang.

Inputs are mutations of valid seeds (bit flips, byte changes, insertions, deletions,
truncations, splices and duplicated runs), structural mutations of JSON documents, and
plain random bytes. In ``make test`` each property runs a few hundred examples; ``make fuzz``
sets ``FUZZ_SECONDS`` and each property keeps running fresh Hypothesis runs until that
many seconds have passed (the issue asks for at least 600 per parser).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.core import audit, manifest
from client.core.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from client.core.manifest import FileEntry, Manifest, SymlinkEntry, TensorEntry
from client.core.note import Signer, Verifier, open_note, sign_note
from client.core.records import decode_body, parse_entry, parse_id, parse_key
from client.core.trust import TrustState
from client.errors import ProvenanceError
from client.formats import open_model
from client.formats.safetensors import parse_header
from ledger.storage import TreeHead
from ledger.storage.rocks_codec import decode_head, decode_varints, encode_head, encode_varints
from tests.descent_fixtures import (
    _p_global,
    _p_int,
    _p_str,
    _p_tuple,
    state_dict_pickle,
    write_gguf,
    write_onnx_model,
    write_safetensors,
    write_torch_legacy,
    write_torch_zip,
)

FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "0"))
"""0 in ``make test``: one Hypothesis run per property. ``make fuzz``: keep running for this long."""
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))  # examples per Hypothesis run
HANG_SECONDS = 10.0  # one parse taking longer than this counts as a hang

SIGNER = Signer.from_seed("example.com/fuzz-log", b"\x42" * 32)
VERIFIER = SIGNER.verifier()
WITNESS = Signer.from_seed("witness.example/w1", b"\x43" * 32)


class Hang(Exception):
    """A parse ran past HANG_SECONDS (deliberately not a ProvenanceError)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"parse still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def refuses_cleanly(parse: Callable[[bytes], object], data: bytes) -> None:
    """The property: ``parse(data)`` returns, or raises a ProvenanceError, within HANG_SECONDS."""
    with time_limit(HANG_SECONDS), suppress(ProvenanceError):
        parse(data)


# ------------------------------------------------------------------ input strategies


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with up to 6 random byte-level edits."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice", "repeat"]))
        n = len(data)
        at = draw(st.integers(0, max(0, n - 1)))
        if op == "flip" and n:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, ord("\n"), ord(" "), ord("{"), ord('"')]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and n:
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, len(other)))
            data[at:at] = other[start : start + draw(st.integers(1, 64))]
        elif op == "repeat" and n:
            data[at:at] = data[at : at + draw(st.integers(1, 32))] * draw(st.integers(1, 4))
    return bytes(data)


def byte_inputs(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(mutated(seeds), mutated(seeds), st.binary(max_size=512), st.sampled_from(seeds))


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(allow_nan=True),
                        st.text(max_size=40), st.sampled_from(["", "0" * 64, "AAAA", "-1", "1e400", "\u2014"]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@st.composite
def json_mutated(draw: st.DrawFn, seeds: list[Any]) -> Any:
    """A JSON seed with up to 4 structural edits: a value replaced, a key dropped or added, a list cut."""
    doc = json.loads(json.dumps(draw(st.sampled_from(seeds))))
    for _ in range(draw(st.integers(1, 4))):
        parent: Any = None
        key: Any = None
        node = doc
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            parent = node
            key = draw(st.sampled_from(sorted(node))) if isinstance(node, dict) else draw(
                st.integers(0, len(node) - 1))
            node = node[key]
        op = draw(st.sampled_from(["replace", "drop", "add", "cut"]))
        if parent is None:
            if op == "replace":
                doc = draw(JSON_VALUES)
            continue
        if op == "replace":
            parent[key] = draw(JSON_VALUES)
        elif op == "drop":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(JSON_VALUES)
        elif op == "cut" and isinstance(node, list):
            del node[draw(st.integers(0, len(node))):]
    return doc


def json_inputs(seeds: list[Any]) -> st.SearchStrategy[bytes]:
    structural = json_mutated(seeds).map(lambda d: json.dumps(d).encode())
    return st.one_of(structural, structural, byte_inputs([json.dumps(s).encode() for s in seeds]))


def fuzz(parse: Callable[[bytes], object], inputs: st.SearchStrategy[bytes], examples: int = EXAMPLES) -> int:
    """Check the property over ``inputs``: one Hypothesis run, or runs until FUZZ_SECONDS pass. Returns runs."""

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(inputs)
    def prop(data: bytes) -> None:
        refuses_cleanly(parse, data)

    stop = time.monotonic() + FUZZ_SECONDS
    runs = 0
    while True:
        prop()
        runs += 1
        if time.monotonic() >= stop:
            return runs


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


# ------------------------------------------------------------------ seeds


def _checkpoint_note(size: int, root: bytes, extra: tuple[str, ...] = ()) -> bytes:
    cp = Checkpoint(SIGNER.name, size, root, extra)
    return sign_note(cp.to_text(), [SIGNER, WITNESS]) if extra else sign_checkpoint(cp, SIGNER)


NOTES = [
    _checkpoint_note(0, bytes(32)),
    _checkpoint_note(12345, bytes(range(32))),
    _checkpoint_note(7, b"\xff" * 32, ("ext line one", "ext two")),
    sign_note("hello\nworld\n", [SIGNER]),
]
KEYS = [VERIFIER.text(), WITNESS.verifier().text(), SIGNER.private_text(), WITNESS.private_text()]


def _manifest() -> Manifest:
    d = bytes(range(32))
    tensor = TensorEntry("layer.0.weight", "F32", (4, 8), 8, 136, d)
    return Manifest(1024, (
        FileEntry("a/model.safetensors", 2048, d, (d, b"\x01" * 32), "safetensors", (tensor,)),
        FileEntry("b.bin", 0, b"\x02" * 32, ()),
        SymlinkEntry("c", "a/model.safetensors"),
    ))


MANIFEST = _manifest()
MANIFEST_BYTES = [manifest.encode(MANIFEST)]
MANIFEST_JSON = [manifest.to_json(MANIFEST)]
SAFETENSORS_HEADERS = [
    json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
                "__metadata__": {"format": "pt"}}).encode(),
    b'{"x": {"dtype": "U8", "shape": [], "data_offsets": [0, 1]}}   ',
]
HEADS = [encode_head(TreeHead(0, bytes(32), ())), encode_head(TreeHead(5, b"\x01" * 32, (b"\x02" * 32, b"\x03" * 32)))]
VARINTS = [encode_varints([0, 1, 127, 128, 300, 1 << 40]), encode_varints([])]


# ------------------------------------------------------------------ notes, keys, checkpoints, audit state


def test_fuzz_open_note() -> None:
    fuzz(lambda d: open_note(d, [VERIFIER, WITNESS.verifier()]), byte_inputs(NOTES))


def test_fuzz_open_checkpoint() -> None:
    fuzz(lambda d: open_checkpoint(d, VERIFIER), byte_inputs(NOTES))


def test_fuzz_checkpoint_text() -> None:
    texts = [n.split(b"\n\n")[0] + b"\n" for n in NOTES]
    fuzz(lambda d: Checkpoint.from_text(_text(d)), byte_inputs(texts))


def test_fuzz_key_texts() -> None:
    seeds = [k.encode() for k in KEYS]

    def parse(d: bytes) -> None:
        try:
            Verifier.from_text(_text(d))
        finally:
            Signer.from_private_text(_text(d))

    fuzz(parse, byte_inputs(seeds))


def test_fuzz_trust_state() -> None:
    seed = TrustState().advance(VERIFIER, NOTES[1], [])[0].to_text()
    fuzz(lambda d: TrustState.from_text(_text(d)), byte_inputs([seed.encode()]))
    fuzz(lambda d: audit.parse_states(d.decode("utf-8", "replace")), json_inputs([json.loads(seed)]))


# ------------------------------------------------------------------ manifests


def test_fuzz_manifest_decode() -> None:
    fuzz(manifest.decode, byte_inputs(MANIFEST_BYTES))


def _manifest_from_json(data: bytes) -> None:
    try:
        obj = json.loads(data)
    except ValueError:  # not JSON at all: json's own refusal, before any of our parsers
        return
    manifest.from_json(obj)


def test_fuzz_manifest_json() -> None:
    fuzz(_manifest_from_json, json_inputs(MANIFEST_JSON))


def test_fuzz_safetensors_header() -> None:
    fuzz(lambda d: parse_header(d, 64), byte_inputs(SAFETENSORS_HEADERS))


# ------------------------------------------------------------------ registry records and proof bundles


@pytest.fixture(scope="module")
def registry_seeds() -> Iterator[dict[str, Any]]:
    """Real signed records, a lineage bundle and a tlog-proof from an in-process registry."""
    from client.core.bundle import TlogProof, format_tlog_proof, to_bytes
    from ledger.registry.prove import build_bundle
    from tests.registry_kit import open_env, story

    env = open_env()
    try:
        recs = story(env)
        q, base = recs["grandchild"], recs["base"]
        bundle = build_bundle(env.registry.reader, env.log, env.log_key, q.id, base.id)
        single = build_bundle(env.registry.reader, env.log, env.log_key, q.id)
        r = single.records[0]
        yield {
            "entries": [s.entry for s in recs.values()],
            "ids": [s.id for s in recs.values()],
            "keys": [s.record.signer for s in recs.values()],
            "bundle": to_bytes(bundle),
            "tlog": format_tlog_proof(TlogProof(r.leaf, r.index, r.inclusion_proof, single.checkpoint)),
            "log_key": env.log_key,
        }
    finally:
        env.close()


def test_fuzz_record_entry(registry_seeds: dict[str, Any]) -> None:
    def parse(d: bytes) -> None:
        parse_entry(d).verify()

    fuzz(parse, byte_inputs(registry_seeds["entries"]))


def test_fuzz_record_body(registry_seeds: dict[str, Any]) -> None:
    fuzz(decode_body, byte_inputs([e[:-64] for e in registry_seeds["entries"]]))


def test_fuzz_record_id_and_key_texts(registry_seeds: dict[str, Any]) -> None:
    from client.core.records import id_text, key_text

    seeds = [id_text(i).encode() for i in registry_seeds["ids"]]
    seeds += [key_text(k).encode() for k in registry_seeds["keys"]]

    def parse(d: bytes) -> None:
        text = _text(d)
        try:
            parse_id(text)
        finally:
            parse_key(text)

    fuzz(parse, byte_inputs(seeds))


def test_fuzz_bundle(registry_seeds: dict[str, Any]) -> None:
    from client.core.bundle import verify_bundle

    key = registry_seeds["log_key"]
    fuzz(lambda d: verify_bundle(d, key), json_inputs([json.loads(registry_seeds["bundle"])]), examples=EXAMPLES // 2)


def test_fuzz_tlog_proof(registry_seeds: dict[str, Any]) -> None:
    from client.core.bundle import verify_tlog_proof

    key = registry_seeds["log_key"]
    fuzz(lambda d: verify_tlog_proof(d, key), byte_inputs([registry_seeds["tlog"]]))


def test_record_key_text_with_non_ascii_is_refused_cleanly() -> None:
    """Found by the fuzzer (bare ValueError from base64); fixed in client/core/records/signing.py."""
    refuses_cleanly(lambda d: parse_key(d.decode()), "ed25519:é9G5ifn5+4T+w2yWvkFbcdTJjIB9x4h7oEmUI/f6I8=".encode())


def _state_with(root: str, note: str) -> bytes:
    logs = {"o": {"verifier_key": KEYS[0], "size": 1, "root": root, "note": note}}
    return json.dumps({"version": 1, "logs": logs}).encode()


def _read_model(path: Path) -> Callable[[bytes], object]:
    def read(data: bytes) -> None:
        path.write_bytes(data)
        for _ in open_model(path).tensors():
            pass

    return read


def _legacy_with_huge_storage(path: Path) -> bytes:
    write_torch_legacy(path, {"w": np.zeros(4, np.float32)})
    raw = path.read_bytes()  # the last storage: 8-byte element count, then 16 bytes of data
    return raw[:-24] + (1 << 60).to_bytes(8, "little") + raw[-16:]


def _legacy_with_huge_frame(path: Path) -> bytes:
    write_torch_legacy(path, {"w": np.zeros(4, np.float32)})
    raw = path.read_bytes()  # the magic-number pickle starts \x80\x02: a FRAME of 2**63 bytes follows
    return raw[:2] + b"\x95" + (1 << 63).to_bytes(8, "little") + raw[2:]


def _onnx_wrong_dims(path: Path) -> bytes:
    write_onnx_model(path, _small_model(), int8=True)
    raw = path.read_bytes()  # the int8 initializer 'w' says dims [5, 32] over 4 x 32 bytes
    assert raw.count(b"\x08\x04\x08 ") == 1
    return raw.replace(b"\x08\x04\x08 ", b"\x08\x05\x08 ")


def _gguf_wrapping_dims(path: Path) -> bytes:
    write_gguf(path, {"w": np.zeros(32, np.float32)})
    raw = path.read_bytes()  # 'w' has one dim, 32: make it two whose int64 product wraps to a small size
    info = b"\x01\x00\x00\x00" + (32).to_bytes(8, "little")
    assert raw.count(info) == 1
    return raw.replace(info, b"\x02\x00\x00\x00" + (32).to_bytes(8, "little") + (1 << 59).to_bytes(8, "little"))


def _zip_first_member(write: Callable[[Path], None], offset: int, value: int) -> Callable[[Path], bytes]:
    """A zip whose first central-directory entry has the 2-byte field at ``offset`` set to ``value``
    (8: flags, bit 0 = encrypted; 10: compression method)."""

    def make(path: Path) -> bytes:
        write(path)
        raw = bytearray(path.read_bytes())
        at = raw.index(b"PK\x01\x02") + offset
        raw[at : at + 2] = value.to_bytes(2, "little")
        return bytes(raw)

    return make


def _zip_name_not_utf8(write: Callable[[Path], None], header: bytes) -> Callable[[Path], bytes]:
    """A zip whose first ``header`` (local ``PK\\3\\4`` or central ``PK\\1\\2``) entry is flagged
    UTF-8 (bit 11) but has a name byte that is not UTF-8."""
    flags_at, name_at = (6, 30) if header == b"PK\x03\x04" else (8, 46)

    def make(path: Path) -> bytes:
        write(path)
        raw = bytearray(path.read_bytes())
        at = raw.index(header)
        raw[at + flags_at + 1] |= 0x08
        raw[at + name_at + 2] = 0x80
        return bytes(raw)

    return make


def _torch_zip(path: Path) -> None:
    write_torch_zip(path, {"w": np.zeros(4, np.float32)})


def _npz(path: Path) -> None:
    with path.open("wb") as f:
        np.savez(f, w=np.zeros(4, np.float32))


def _torch_zip_pickle(change: Callable[[bytes], bytes]) -> Callable[[Path], bytes]:
    def make(path: Path) -> bytes:
        arr = np.arange(4, dtype=np.float32)
        write_torch_zip(path, {"w": arr}, pickle_bytes=change(state_dict_pickle({"w": arr})))
        return path.read_bytes()

    return make


def _negative_offset(pkl: bytes) -> bytes:
    assert pkl.count(b"Q" + _p_int(0)) == 1  # the storage offset after the persistent id
    return pkl.replace(b"Q" + _p_int(0), b"Q" + _p_int(-1))


def _stride_longer_than_size(pkl: bytes) -> bytes:
    old = _p_tuple([_p_int(1)])  # the stride (1,) of the shape (4,)
    assert pkl.count(old) == 1
    return pkl.replace(old, _p_tuple([_p_int(1), _p_int(1)]))


def _expanded_view(pkl: bytes) -> bytes:
    """Shape (4,) stride (1,) -> shape (2**36,) stride (0,): 256 GiB of float32 read from 16 bytes of storage."""
    shape, stride = _p_tuple([_p_int(4)]), _p_tuple([_p_int(1)])
    assert pkl.count(shape + stride) == 1
    return pkl.replace(shape + stride, _p_tuple([_p_int(1 << 36)]) + _p_tuple([_p_int(0)]))


def _manifest_json_with(symlinks: object) -> Callable[[Path], bytes]:
    def make(_: Path) -> bytes:
        doc = manifest.to_json(MANIFEST)
        doc["symlinks"] = symlinks
        return json.dumps(doc).encode()

    return make


def _torch_view_bytes(size: list[int], stride: list[int], numel: int = 0, offset: int = 0, data: bytes = b"") -> bytes:
    """A PyTorch zip with one float32 view of the given size and stride over a stored storage."""
    import zlib

    from tests.formats.test_hostile_inputs import _zip

    pid = _p_tuple([_p_str("storage"), _p_global("torch", "FloatStorage"), _p_str("0"), _p_str("cpu"), _p_int(numel)])
    hooks = _p_global("collections", "OrderedDict") + b")R"
    t = _p_global("torch._utils", "_rebuild_tensor_v2") + _p_tuple([
        pid + b"Q", _p_int(offset), _p_tuple([_p_int(d) for d in size]), _p_tuple([_p_int(s) for s in stride]),
        b"\x89", hooks]) + b"R"
    pkl = b"\x80\x02}(" + _p_str("w") + t + b"u."
    return _zip([("archive/data.pkl", pkl, len(pkl), 0, zlib.crc32(pkl)),
                 ("archive/data/0", data, len(data), 0, zlib.crc32(data))])


ROOT = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
REGRESSIONS: dict[str, tuple[str, Callable[[Path], bytes]]] = {
    # audit state: non-ASCII base64 (bare ValueError) and a lone surrogate from a JSON \u escape
    "state non-ASCII root": ("state", lambda _: _state_with("é" * 44, "x")),
    "state surrogate note": ("state", lambda _: _state_with(ROOT, "\udc80x")),
    # torch legacy: a storage claiming 2**60 elements made seek() fail (OSError / ValueError)
    "torch legacy huge storage": ("huge.pt", _legacy_with_huge_storage),
    # torch legacy: a pickle FRAME longer than sys.maxsize was a bare OverflowError (make fuzz, 600 s)
    "torch legacy huge frame": ("frame.pt", _legacy_with_huge_frame),
    # onnx: a parse error inside the mmap surfaced as BufferError when the map closed
    "onnx wrong dims": ("bad.onnx", _onnx_wrong_dims),
    # npy: numpy's header parser raises SyntaxError / tokenize.TokenError
    "npy bad header": ("bad.npy", lambda _: b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4\x00  \n"),
    # gguf: dims whose int64 product wraps passed the size check, then numpy refused the allocation (make fuzz)
    "gguf wrapping dims": ("wrap.gguf", _gguf_wrapping_dims),
    # manifest JSON: "symlinks": null or a number was a TypeError (make fuzz)
    "manifest symlinks null": ("manifest", _manifest_json_with(None)),
    "manifest symlinks number": ("manifest", _manifest_json_with(5)),
    # zip members that are encrypted (RuntimeError) or use an unknown method (NotImplementedError) (make fuzz)
    "torch zip encrypted": ("enc.pt", _zip_first_member(_torch_zip, 8, 1)),
    "torch zip unknown method": ("method.pt", _zip_first_member(_torch_zip, 10, 99)),
    "npz encrypted": ("enc.npz", _zip_first_member(_npz, 8, 1)),
    "npz unknown method": ("method.npz", _zip_first_member(_npz, 10, 99)),
    # torch zip: a member name flagged UTF-8 that is not was a bare UnicodeDecodeError (make fuzz, 600 s)
    "torch zip local name not UTF-8": ("utf8l.pt", _zip_name_not_utf8(_torch_zip, b"PK\x03\x04")),
    "torch zip central name not UTF-8": ("utf8c.pt", _zip_name_not_utf8(_torch_zip, b"PK\x01\x02")),
    # torch: a stride longer than the size was a bare ValueError from zip() (make fuzz)
    "torch stride longer than size": ("stride.pt", _torch_zip_pickle(_stride_longer_than_size)),
    # torch: a stride-0 view of 2**k elements over a tiny storage was read out whole: a fuzzed 1 KiB file
    # made the reader allocate 24 GB and the OOM killer end it (make fuzz, 600 s run)
    "torch expanded view": ("expand.pt", _torch_zip_pickle(_expanded_view)),
    # issue 15 size class (make fuzz, 60 s): an empty view with a stride of 2**62 overflowed numpy's C long
    "torch empty view huge stride": ("stride62.pt", lambda _: _torch_view_bytes([0, 0], [0, (1 << 62) - 1])),
    # issue 15 size class: one byte of packed float_data was a bare ValueError, surfacing as BufferError
    "onnx partial packed float": ("partial.onnx", lambda _: b'\x08\x08:\n*\x08\x10\x02B\x01t"\x01\x00'),
    # onnx: an int32_data varint of 2**63 overflowed int64 (OverflowError, then BufferError; make fuzz, 600 s)
    "onnx varint beyond int64": ("wide.onnx", lambda _: b"\x08\x08:\x13*\x11\x10\x01B\x01t*\n" + b"\x80" * 9 + b"\x01"),
}


@pytest.mark.parametrize("case", list(REGRESSIONS))
def test_regressions_found_by_fuzzing(tmp_path: Path, case: str) -> None:
    """Inputs the fuzzer found (each fixed); kept so they stay fixed."""
    target, make = REGRESSIONS[case]
    if target == "state":
        refuses_cleanly(lambda d: TrustState.from_text(d.decode()), make(tmp_path))
    elif target == "manifest":
        refuses_cleanly(_manifest_from_json, make(tmp_path))
    else:
        path = tmp_path / target
        refuses_cleanly(_read_model(path), make(path))


# ------------------------------------------------------------------ model readers


def _small_model() -> dict[str, np.ndarray[Any, Any]]:
    r = np.random.default_rng(0)
    return {"w": r.standard_normal((4, 32)).astype(np.float32), "b": np.zeros(32, np.float32)}


@pytest.fixture(scope="module")
def model_seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    """Valid model files in every format the readers take, as bytes, keyed by file suffix."""
    tmp = tmp_path_factory.mktemp("models")
    t = _small_model()
    write_safetensors(tmp / "m.safetensors", t)
    write_torch_zip(tmp / "z.pt", t)
    write_torch_legacy(tmp / "l.pt", t)
    write_onnx_model(tmp / "m.onnx", t)
    write_onnx_model(tmp / "q.onnx", t, int8=True)
    write_gguf(tmp / "f.gguf", t)
    write_gguf(tmp / "q.gguf", t, {"w": "Q8_0", "b": "F32"})
    np.savez(tmp / "m.npz", w=t["w"], b=t["b"])
    np.save(tmp / "m.npy", t["w"])
    files = {".safetensors": ["m.safetensors"], ".pt": ["z.pt", "l.pt"], ".onnx": ["m.onnx", "q.onnx"],
             ".gguf": ["f.gguf", "q.gguf"], ".npz": ["m.npz", "m.npy"]}
    return {suffix: [(tmp / n).read_bytes() for n in names] for suffix, names in files.items()}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".onnx", ".gguf", ".npz"])
def test_fuzz_model_readers(model_seeds: dict[str, list[bytes]], tmp_path_factory: pytest.TempPathFactory,
                            suffix: str) -> None:
    path: Path = tmp_path_factory.mktemp("fuzzed") / f"model{suffix}"
    fuzz(_read_model(path), byte_inputs(model_seeds[suffix]), examples=EXAMPLES // 2)


# ------------------------------------------------------------------ the server's own stored-value decoders


def test_fuzz_stored_head_and_dedup_values() -> None:
    fuzz(decode_head, byte_inputs(HEADS))
    fuzz(decode_varints, byte_inputs(VARINTS))


# ------------------------------------------------------------------ no user-supplied URL is ever fetched


FETCHING_MODULES = ("urllib", "http.client", "requests", "httpx", "aiohttp", "ftplib", "smtplib", "socket",
                    "urllib3", "pycurl", "websocket")
NOT_FETCHING = ("http.server", "urllib.parse")  # a server, and text parsing: neither opens a connection
# Network clients that reach only addresses the operator configured, never a URL a user supplied: module -> why.
OPERATOR_CONFIGURED_FETCHES = {
    "ledger/log/witness_wire.py": "pushes checkpoints to the witnesses named by the operator's serve "
                                  "--witness-policy file (issue 13, C2SP tlog-witness)",
}


def test_no_code_can_fetch_a_url() -> None:
    """Issue 6: no user-supplied URL is ever fetched. No module of ``client`` or ``ledger`` imports a client
    networking library (gRPC channels and the metrics HTTP *server* are the only network code)."""
    import ast

    repo = Path(__file__).resolve().parents[2]
    offenders = []
    for path in sorted([*(repo / "client").rglob("*.py"), *(repo / "ledger").rglob("*.py")]):
        if "_pb" in path.parts or str(path.relative_to(repo)) in OPERATOR_CONFIGURED_FETCHES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if (name.split(".")[0] in {m.split(".")[0] for m in FETCHING_MODULES}
                        and name not in NOT_FETCHING):
                    offenders.append(f"{path.relative_to(repo)}: import {name}")
    assert not offenders, offenders


def test_torch_negative_storage_offset_is_refused(tmp_path: Path) -> None:
    """Found by ``make fuzz``: a negative storage offset made the strided view read memory *before* the
    storage (the reader returned bytes from outside the file's data). Now refused."""
    from client.errors import FormatError

    path = tmp_path / "neg.pt"
    path.write_bytes(_torch_zip_pickle(_negative_offset)(path))
    with pytest.raises(FormatError, match="negative offset"):
        list(open_model(path).tensors())


# ------------------------------------------------------------------ issue 15: the nesting class
# Deeply nested JSON in every parser of untrusted JSON: inserted anywhere in a seed, or as a value at a
# real position of it; depths around the limit, around the interpreter's recursion limit, and far past.

NEST_DEPTHS = st.one_of(st.integers(1, 80), st.integers(900, 1100), st.integers(10_000, 200_000))
NEST_OPENERS = st.sampled_from([(b"[", b"]"), (b'{"k":', b"}"), (b'[{"a":', b"}]"), (b'{"[":[', b"]}")])
_MARK = "\x00nested\x00"


@st.composite
def nested_json(draw: st.DrawFn, seeds: list[Any]) -> bytes:
    depth = draw(NEST_DEPTHS)
    opener, closer = draw(NEST_OPENERS)
    leaf = draw(st.sampled_from([b"1", b'"]]"', b"[]", b'"\\\\"', b"{}"]))
    blob = opener * depth + leaf + closer * draw(st.sampled_from([depth, depth, 0, max(0, depth - 1)]))
    seed = json.loads(json.dumps(draw(st.sampled_from(seeds))))
    if draw(st.booleans()):
        text = json.dumps(seed).encode()
        at = draw(st.integers(0, len(text)))
        return text[:at] + blob + text[at:]
    node = seed
    while isinstance(node, dict | list) and node:
        key = draw(st.sampled_from(sorted(node))) if isinstance(node, dict) else draw(st.integers(0, len(node) - 1))
        if not isinstance(node[key], dict | list) or not node[key] or draw(st.booleans()):
            node[key] = _MARK
            break
        node = node[key]
    else:
        seed = _MARK
    return json.dumps(seed).encode().replace(json.dumps(_MARK).encode(), blob)


def test_fuzz_nesting_safetensors_header() -> None:
    seeds = [json.loads(h) for h in SAFETENSORS_HEADERS]
    fuzz(lambda d: parse_header(d, 64), nested_json(seeds), examples=EXAMPLES // 3)


def test_fuzz_nesting_safetensors_index(tmp_path: Path) -> None:
    folder = tmp_path / "sharded"
    folder.mkdir()
    write_safetensors(folder / "a.safetensors", {"w": np.zeros(4, np.float32)})
    index = folder / "model.safetensors.index.json"

    def read(d: bytes) -> None:
        index.write_bytes(d)
        for _ in open_model(folder).tensors():
            pass

    fuzz(read, nested_json([{"metadata": {"total_size": 16}, "weight_map": {"w": "a.safetensors"}}]),
         examples=EXAMPLES // 3)


def test_fuzz_nesting_manifest_json(tmp_path: Path) -> None:
    from client.cli.hash_cmd import _load_manifest

    path = tmp_path / "manifest.json"

    def load(d: bytes) -> None:
        path.write_bytes(d)
        _load_manifest(str(path))

    fuzz(load, nested_json(MANIFEST_JSON), examples=EXAMPLES // 3)


def test_fuzz_nesting_audit_state() -> None:
    seed = json.loads(TrustState().advance(VERIFIER, NOTES[1], [])[0].to_text())
    fuzz(TrustState.from_bytes, nested_json([seed]), examples=EXAMPLES // 3)


def test_fuzz_nesting_bundle(registry_seeds: dict[str, Any]) -> None:
    from client.core.bundle import verify_bundle

    key = registry_seeds["log_key"]
    fuzz(lambda d: verify_bundle(d, key), nested_json([json.loads(registry_seeds["bundle"])]), examples=EXAMPLES // 3)


# ------------------------------------------------------------------ issue 15: the size class
# Huge declared shapes and sizes in every format: dims and counts at and around the int32, int64 and uint64
# edges, the element bound and numpy's limit, with a zero dim or without, over a few bytes of data; zip
# entries whose declared sizes lie or inflate. Each must parse (within memory) or be refused.

_EDGES = sorted({max(0, (1 << k) + d) for k in (8, 16, 31, 32, 33, 40, 41, 47, 48, 49, 62, 63, 64) for d in (-1, 0, 1)})
BIG = st.one_of(st.sampled_from([0, 0, 1, 2, 4, 32]), st.sampled_from(_EDGES), st.integers(0, (1 << 64) - 1))
BIG_DIMS = st.lists(BIG, max_size=6)
SMALL_DATA = st.binary(max_size=64)


@st.composite
def huge_safetensors(draw: st.DrawFn) -> bytes:
    from tests.formats.test_hostile_inputs import _safetensors

    data = draw(SMALL_DATA)
    tensors = {f"t{i}": {"dtype": draw(st.sampled_from(["F32", "BF16", "U8", "F4", "I64"])), "shape": draw(BIG_DIMS),
                         "data_offsets": [0, draw(st.one_of(st.just(len(data)), BIG))]}
               for i in range(draw(st.integers(1, 3)))}
    return _safetensors(json.dumps(tensors).encode(), data)


@st.composite
def huge_gguf(draw: st.DrawFn) -> bytes:
    dims = draw(st.lists(BIG.map(lambda v: v % (1 << 64)), max_size=5))
    out = b"GGUF" + struct.pack("<IQQ", 3, 1, 0)
    out += struct.pack("<Q", 1) + b"t" + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
    out += struct.pack("<IQ", draw(st.sampled_from([0, 1, 2, 8, 12, 24, 30, 39, 99])), draw(BIG) % (1 << 64))
    return out + b"\x00" * (-len(out) % 32) + draw(SMALL_DATA)


@st.composite
def huge_onnx(draw: st.DrawFn) -> bytes:
    from tests.formats.test_hostile_inputs import _varint

    dims = draw(st.lists(BIG.map(lambda v: v % (1 << 64)), max_size=5))
    data = draw(SMALL_DATA)
    field = draw(st.sampled_from([b"\x4a", b"\x22", b"\x2a", b"\x3a"]))  # raw_data, float_data, int32_data, int64_data
    dtype = _varint(draw(st.sampled_from([1, 2, 3, 6, 7, 16])))
    tensor = b"".join(b"\x08" + _varint(d) for d in dims) + b"\x10" + dtype
    tensor += b"\x42\x01t" + field + _varint(len(data)) + data
    graph = b"\x2a" + _varint(len(tensor)) + tensor
    return b"\x08\x08" + b"\x3a" + _varint(len(graph)) + graph


@st.composite
def huge_npy(draw: st.DrawFn) -> bytes:
    shape = tuple(draw(BIG_DIMS))
    text = repr({"descr": draw(st.sampled_from(["<f4", ">f8", "|u1", "<c16"])), "fortran_order": draw(st.booleans()),
                 "shape": shape}).encode()
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + draw(SMALL_DATA)


@st.composite
def huge_torch_zip(draw: st.DrawFn) -> bytes:
    import zlib

    from tests.formats.test_hostile_inputs import _zip

    size, stride = draw(st.lists(BIG, max_size=4)), draw(st.lists(BIG, max_size=4))
    pid = _p_tuple([_p_str("storage"), _p_global("torch", "FloatStorage"), _p_str("0"), _p_str("cpu"),
                    _p_int(draw(BIG))])
    hooks = _p_global("collections", "OrderedDict") + b")R"
    t = _p_global("torch._utils", "_rebuild_tensor_v2") + _p_tuple([
        pid + b"Q", _p_int(draw(BIG)), _p_tuple([_p_int(d) for d in size]), _p_tuple([_p_int(s) for s in stride]),
        b"\x89", hooks]) + b"R"
    pkl = b"\x80\x02}(" + _p_str("w") + t + b"u."
    data = draw(SMALL_DATA)
    deflate = draw(st.booleans())
    stored = zlib.compress(data)[2:-4] if deflate else data
    declared = draw(st.one_of(st.just(len(data)), BIG.map(lambda v: v % (1 << 32))))
    return _zip([("archive/data.pkl", pkl, len(pkl), 0, zlib.crc32(pkl)),
                 ("archive/data/0", stored, declared, 8 if deflate else 0, zlib.crc32(data))])


SIZE_CLASS = {".safetensors": huge_safetensors(), ".gguf": huge_gguf(), ".onnx": huge_onnx(), ".npy": huge_npy(),
              ".pt": huge_torch_zip()}


@pytest.mark.parametrize("suffix", list(SIZE_CLASS))
def test_fuzz_size_class(tmp_path: Path, suffix: str) -> None:
    from client.formats import HEAD_BYTES, layout_of
    from client.formats.source import BytesSource

    path = tmp_path / f"huge{suffix}"
    read = _read_model(path)

    def parse(d: bytes) -> None:
        try:
            layout_of(path.name, d[:HEAD_BYTES], BytesSource(path.name, d))
        finally:
            read(d)

    fuzz(parse, SIZE_CLASS[suffix], examples=EXAMPLES // 3)
