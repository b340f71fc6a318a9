"""Test helpers for readers and descent: minimal writers for every format, and model generators.

The writers are written from the format descriptions in client/formats/*.py, independently of
the readers' code paths where it matters (pickle opcodes are emitted by hand; protobuf is
encoded by hand), so tests do not need torch, onnx or llama.cpp.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tests.test_manifest_support import ST_DTYPES, TensorSpec, safetensors_bytes

Arr = npt.NDArray[np.generic]
Model = dict[str, Arr]

# ---------------------------------------------------------------- safetensors

def write_safetensors(path: Path, tensors: Model, *, bf16: set[str] | None = None) -> None:
    """``tensors`` as a safetensors file (header padded to 8 bytes), through the tests' one writer."""
    specs: dict[str, TensorSpec] = {}
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr)
        if bf16 and name in bf16:
            specs[name] = ("BF16", list(a.shape), (a.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes())
        else:
            specs[name] = (ST_DTYPES[a.dtype.name], list(a.shape), a.astype(a.dtype.newbyteorder("<")).tobytes())
    path.write_bytes(safetensors_bytes(specs, metadata={"format": "pt"}, align=8))


def write_sharded(folder: Path, tensors: Model, shards: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    weight_map = {}
    for s in range(shards):
        part = names[s::shards]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(folder / fname, {n: tensors[n] for n in part})
        weight_map.update({n: fname for n in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


# ---------------------------------------------------------------- PyTorch pickle (hand-emitted opcodes)

_STORAGE = {"float32": "FloatStorage", "float16": "HalfStorage", "float64": "DoubleStorage", "int64": "LongStorage",
            "int32": "IntStorage", "int8": "CharStorage", "uint8": "ByteStorage", "bool": "BoolStorage"}


def _p_str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _p_int(i: int) -> bytes:
    if 0 <= i < 1 << 31:
        return b"J" + struct.pack("<i", i)
    raw = i.to_bytes((i.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _p_tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t" if items else b")"


def _p_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _p_tensor(key: str, arr: Arr, *, parameter: bool = False) -> bytes:
    pid = _p_tuple([_p_str("storage"), _p_global("torch", _STORAGE[arr.dtype.name]), _p_str(key), _p_str("cpu"),
                    _p_int(arr.size)])
    stride = [int(np.prod(arr.shape[i + 1:], dtype=np.int64)) for i in range(arr.ndim)]
    hooks = _p_global("collections", "OrderedDict") + b")R"
    t = _p_global("torch._utils", "_rebuild_tensor_v2") + _p_tuple([
        pid + b"Q", _p_int(0), _p_tuple([_p_int(d) for d in arr.shape]), _p_tuple([_p_int(s) for s in stride]),
        b"\x89", hooks,
    ]) + b"R"
    if parameter:
        t = _p_global("torch._utils", "_rebuild_parameter") + _p_tuple([t, b"\x88", hooks]) + b"R"
    return t


def state_dict_pickle(tensors: Model, *, nested: bool = False) -> bytes:
    items = b"".join(_p_str(n) + _p_tensor(str(i), a, parameter=i % 2 == 1) for i, (n, a) in enumerate(tensors.items()))
    body = b"}(" + items + b"u"
    if nested:
        body = b"}(" + _p_str("state_dict") + body + _p_str("epoch") + _p_int(3) + b"u"
    return b"\x80\x02" + body + b"."


def write_zip(path: Path, entries: dict[str, bytes]) -> None:
    """A stored (uncompressed) zip archive with fixed timestamps, so equal entries give equal bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)


def write_torch_zip(path: Path, tensors: Model, *, pickle_bytes: bytes | None = None) -> None:
    entries = {"archive/data.pkl": pickle_bytes if pickle_bytes is not None else state_dict_pickle(tensors),
               "archive/byteorder": b"little"}
    entries.update((f"archive/data/{i}", np.ascontiguousarray(a).tobytes()) for i, a in enumerate(tensors.values()))
    entries["archive/version"] = b"3\n"
    write_zip(path, entries)


def write_npz(path: Path, tensors: Model) -> None:
    """An .npz as ``np.savez`` writes it (stored ``<name>.npy`` entries), with fixed timestamps."""
    import io

    def npy(a: Arr) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
        return buf.getvalue()

    write_zip(path, {f"{name}.npy": npy(a) for name, a in tensors.items()})


def write_torch_legacy(path: Path, tensors: Model, *, pickle_bytes: bytes | None = None) -> None:
    out = [
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2),
        pickle.dumps(1001, protocol=2),
        pickle.dumps({"protocol_version": 1001, "little_endian": True,
                      "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2),
        pickle_bytes if pickle_bytes is not None else state_dict_pickle(tensors, nested=True),
        pickle.dumps([str(i) for i in range(len(tensors))], protocol=2),
    ]
    for a in tensors.values():
        out.append(struct.pack("<q", a.size) + np.ascontiguousarray(a).tobytes())
    path.write_bytes(b"".join(out))


def malicious_pickle(command_file: Path) -> bytes:
    """A pickle that, if loaded by plain pickle, would run ``os.system('touch FILE')``."""
    return b"\x80\x02" + _p_global("os", "system") + _p_tuple([_p_str(f"touch {command_file}")]) + b"R."


# ---------------------------------------------------------------- ONNX (hand-encoded protobuf)

def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _f_varint(field: int, v: int) -> bytes:
    return _varint(field << 3) + _varint(v)


def _f_bytes(field: int, b: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(b)) + b


_ONNX_TYPES = {"float32": 1, "uint8": 2, "int8": 3, "int32": 6, "int64": 7, "float16": 10, "float64": 11}


def onnx_tensor(name: str, arr: Arr, *, typed: bool = False) -> bytes:
    a = np.ascontiguousarray(arr)
    body = b"".join(_f_varint(1, d) for d in a.shape) + _f_varint(2, _ONNX_TYPES[a.dtype.name])
    body += _f_bytes(8, name.encode())
    if typed and a.dtype == np.float32:
        body += _f_bytes(4, a.astype("<f4").tobytes())  # packed float_data
    else:
        body += _f_bytes(9, a.tobytes())
    return body


def onnx_node(op: str, inputs: list[str], outputs: list[str], ints: dict[str, int] | None = None) -> bytes:
    body = b"".join(_f_bytes(1, i.encode()) for i in inputs) + b"".join(_f_bytes(2, o.encode()) for o in outputs)
    body += _f_bytes(4, op.encode())
    for k, v in (ints or {}).items():
        body += _f_bytes(5, _f_bytes(1, k.encode()) + _f_varint(3, v) + _f_varint(20, 2))
    return body


def write_onnx(path: Path, initializers: list[bytes], nodes: list[bytes]) -> None:
    graph = b"".join(_f_bytes(1, n) for n in nodes) + _f_bytes(2, b"g") + b"".join(_f_bytes(5, t) for t in initializers)
    model = _f_varint(1, 8) + _f_bytes(7, graph) + _f_bytes(8, _f_varint(2, 17))
    path.write_bytes(model)


def quantize_rows_int8(w: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Symmetric int8 with one scale per row (axis 0)."""
    scale = np.abs(w).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def write_onnx_model(path: Path, tensors: Model, *, int8: bool = False, matmul_transposed: bool = True) -> None:
    """Each 2-D tensor (out, in) becomes a MatMul weight stored (in, out) — or, with ``int8``,
    an int8 initializer with per-row scales behind DequantizeLinear(axis=0) feeding MatMul
    after a Transpose-free layout (stored (out, in), consumed by Gemm transB=1)."""
    inits, nodes = [], []
    for i, (name, a) in enumerate(tensors.items()):
        if a.ndim == 2 and int8:
            q, s = quantize_rows_int8(a.astype(np.float32))
            inits += [onnx_tensor(name, q), onnx_tensor(name + "_scale", s)]
            nodes.append(onnx_node("DequantizeLinear", [name, name + "_scale"], [name + "_dq"], {"axis": 0}))
            nodes.append(onnx_node("Gemm", [f"x{i}", name + "_dq"], [f"y{i}"], {"transB": 1}))
        elif a.ndim == 2 and matmul_transposed:
            inits.append(onnx_tensor(name, np.ascontiguousarray(a.T)))
            nodes.append(onnx_node("MatMul", [f"x{i}", name], [f"y{i}"]))
        else:
            inits.append(onnx_tensor(name, a, typed=i % 2 == 0))
    write_onnx(path, inits, nodes)


# ---------------------------------------------------------------- GGUF

def _g_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def quantize_blocks(x: npt.NDArray[np.float32], kind: str) -> bytes:
    """Reference quantizers for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (blocks of 32, float16 d and m)."""
    b = x.astype(np.float32).reshape(-1, 32)
    out = []
    for blk in b:
        if kind == "Q8_0":
            d = np.abs(blk).max() / 127
            q = np.round(blk / d).astype(np.int8) if d else np.zeros(32, np.int8)
            out.append(np.float16(d).tobytes() + q.tobytes())
            continue
        bits = 4 if kind.startswith("Q4") else 5
        if kind.endswith("_0"):
            amax = blk[np.argmax(np.abs(blk))]
            d = amax / -(1 << (bits - 1))
            inv = 1 / d if d else 0.0
            q = np.clip(np.trunc(blk * inv + (1 << (bits - 1)) + 0.5), 0, (1 << bits) - 1).astype(np.uint32)
            head = np.float16(d).tobytes()
        else:
            lo, hi = blk.min(), blk.max()
            d = (hi - lo) / ((1 << bits) - 1)
            inv = 1 / d if d else 0.0
            q = np.clip(np.trunc((blk - lo) * inv + 0.5), 0, (1 << bits) - 1).astype(np.uint32)
            head = np.float16(d).tobytes() + np.float16(lo).tobytes()
        qs = ((q[:16] & 0xF) | ((q[16:] & 0xF) << 4)).astype(np.uint8)
        if bits == 5:
            qh = 0
            for j in range(16):
                qh |= int((q[j] >> 4) & 1) << j
                qh |= int((q[j + 16] >> 4) & 1) << (j + 16)
            head += struct.pack("<I", qh)
        out.append(head + qs.tobytes())
    return b"".join(out)


_GG_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8}


def write_gguf(path: Path, tensors: Model, kinds: dict[str, str] | None = None, *, align: int = 32) -> None:
    kinds = kinds or {}
    kv = [_g_str("general.architecture") + struct.pack("<I", 8) + _g_str("test"),
          _g_str("general.alignment") + struct.pack("<II", 4, align),
          _g_str("test.list") + struct.pack("<IIQ", 9, 5, 2) + struct.pack("<ii", 1, 2)]
    infos, blobs, off = [], [], 0
    for name, a in tensors.items():
        kind = kinds.get(name, "F32" if a.dtype != np.float16 else "F16")
        if kind == "F32":
            raw = a.astype("<f4").tobytes()
        elif kind == "F16":
            raw = a.astype("<f2").tobytes()
        else:
            raw = quantize_blocks(a.astype(np.float32), kind)
        dims = list(reversed(a.shape))
        infos.append(_g_str(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", _GG_TYPES[kind], off))
        raw += b"\x00" * (-len(raw) % align)
        blobs.append(raw)
        off += len(raw)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv) + b"".join(infos)
    head += b"\x00" * (-len(head) % align)
    path.write_bytes(head + b"".join(blobs))


# ---------------------------------------------------------------- models

def base_model(seed: int, *, d: int = 128, h: int = 256, layers: int = 4, vocab: int = 512) -> Model:
    """A small transformer-shaped model: embeddings, per layer attention + MLP + LayerNorms."""
    r = np.random.default_rng(seed)

    def w(o: int, i: int) -> npt.NDArray[np.float32]:
        return (r.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)

    t: Model = {"embed.weight": (r.standard_normal((vocab, d)) * 0.02).astype(np.float32)}
    for layer in range(layers):
        p = f"layers.{layer}."
        t[p + "attn.qkv.weight"] = w(3 * d, d)
        t[p + "attn.out.weight"] = w(d, d)
        t[p + "mlp.up.weight"] = w(h, d)
        t[p + "mlp.up.bias"] = np.zeros(h, np.float32)
        t[p + "mlp.down.weight"] = w(d, h)
        t[p + "ln1.weight"] = np.ones(d, np.float32)
        t[p + "ln1.bias"] = np.zeros(d, np.float32)
    t["final_ln.weight"] = np.ones(d, np.float32)
    return t


# ---------------------------------------------------------------- derivations of a model

def _mats(t: Model) -> list[str]:
    return [k for k, v in t.items() if v.ndim == 2]


def noisy(t: Model, eps: float, seed: int = 1) -> Model:
    """Continued training stand-in: every matrix gets i.i.d. noise of ``eps`` times its own std."""
    r = np.random.default_rng(seed)
    return {k: (v + eps * v.std() * r.standard_normal(v.shape)).astype(v.dtype) if v.ndim == 2 else v
            for k, v in t.items()}


def cast(t: Model, dtype: str) -> Model:
    return {k: v.astype(dtype) for k, v in t.items()}


def prune(t: Model, fraction: float) -> Model:
    """Magnitude pruning: the smallest ``fraction`` of each matrix's entries set to zero."""
    out = dict(t)
    for k in _mats(t):
        v = t[k].copy()
        v[np.abs(v) < np.quantile(np.abs(v), fraction)] = 0
        out[k] = v
    return out


def low_rank_merge(t: Model, rank: int, scale: float, seed: int = 2) -> Model:
    """W + U V^T with ||U V^T||_F = scale * ||W||_F (a merged LoRA adapter)."""
    r = np.random.default_rng(seed)
    out = dict(t)
    for k in _mats(t):
        w = t[k]
        delta = r.standard_normal((w.shape[0], rank)) @ r.standard_normal((rank, w.shape[1]))
        out[k] = (w + delta * (scale * np.linalg.norm(w) / np.linalg.norm(delta))).astype(w.dtype)
    return out


def drop_layers(t: Model, keep: set[int]) -> Model:
    out = {}
    for k, v in t.items():
        if k.startswith("layers."):
            layer = int(k.split(".")[1])
            if layer not in keep:
                continue
            k = f"layers.{sorted(keep).index(layer)}." + k.split(".", 2)[2]
        out[k] = v
    return out


def permute_hidden(t: Model, seed: int = 3) -> Model:
    """Function-preserving permutation of every layer's MLP hidden units and attention value units,
    plus renaming of every tensor."""
    r = np.random.default_rng(seed)
    out = dict(t)
    layers = sorted({int(k.split(".")[1]) for k in t if k.startswith("layers.")})
    for layer in layers:
        p = f"layers.{layer}."
        h = r.permutation(t[p + "mlp.up.weight"].shape[0])
        out[p + "mlp.up.weight"] = t[p + "mlp.up.weight"][h]
        out[p + "mlp.up.bias"] = t[p + "mlp.up.bias"][h]
        out[p + "mlp.down.weight"] = t[p + "mlp.down.weight"][:, h]
        d = t[p + "attn.out.weight"].shape[1]
        v = r.permutation(d)
        qkv = t[p + "attn.qkv.weight"].copy()
        qkv[2 * d:] = qkv[2 * d:][v]
        out[p + "attn.qkv.weight"] = qkv
        out[p + "attn.out.weight"] = t[p + "attn.out.weight"][:, v]
    return {f"renamed.{i}": out[k] for i, k in enumerate(sorted(out))}


def ensemble(a: Model, b: Model) -> Model:
    return {**{"member0." + k: v for k, v in a.items()}, **{"member1." + k: v for k, v in b.items()}}


def fresh_init(seed: int) -> Model:
    """Same architecture as base_model, another initialisation (LayerNorm ones, zero biases)."""
    return base_model(seed)


def fingerprint_of(t: Model) -> object:
    from client.core.descent.fingerprint import build

    return build(t.items())


# ---------------------------------------------------------------- genuinely trained small networks

def _task(seed: int, n: int = 4096, d_in: int = 32, classes: int = 10) -> tuple[Arr, Arr]:
    """A fixed synthetic classification task: inputs N(0, I), labels from a random teacher network."""
    r = np.random.default_rng(10_000 + seed)
    x = r.standard_normal((n, d_in)).astype(np.float32)
    w1 = r.standard_normal((d_in, 48)).astype(np.float32)
    w2 = r.standard_normal((48, classes)).astype(np.float32)
    y = np.argmax(np.tanh(x @ w1) @ w2, axis=1)
    return x, y


def init_mlp(seed: int, sizes: tuple[int, ...] = (32, 96, 96, 10)) -> Model:
    r = np.random.default_rng(seed)
    t: Model = {}
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        t[f"fc{i}.weight"] = (r.standard_normal((b, a)) * np.sqrt(2 / a)).astype(np.float32)
        t[f"fc{i}.bias"] = np.zeros(b, np.float32)
    return t


def train_mlp(t: Model, *, task: int = 0, steps: int = 300, lr: float = 0.05, seed: int = 0) -> Model:
    """Plain SGD with momentum on cross-entropy; ReLU hidden layers. Returns new arrays."""
    x, y = _task(task)
    r = np.random.default_rng(seed)
    params = {k: v.astype(np.float32).copy() for k, v in t.items()}
    vel = {k: np.zeros_like(v) for k, v in params.items()}
    layers = len(params) // 2
    for _ in range(steps):
        idx = r.integers(0, len(x), 128)
        acts = [x[idx]]
        for i in range(layers):
            z = acts[-1] @ params[f"fc{i}.weight"].T + params[f"fc{i}.bias"]
            acts.append(np.maximum(z, 0) if i < layers - 1 else z)
        logits = acts[-1]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = p
        grad[np.arange(len(idx)), y[idx]] -= 1
        grad /= len(idx)
        for i in reversed(range(layers)):
            gw = grad.T @ acts[i]
            gb = grad.sum(axis=0)
            if i > 0:
                grad = (grad @ params[f"fc{i}.weight"]) * (acts[i] > 0)
            for k, g in ((f"fc{i}.weight", gw), (f"fc{i}.bias", gb)):
                vel[k] = 0.9 * vel[k] - lr * g.astype(np.float32)
                params[k] += vel[k]
    return params


# ---------------------------------------------------------------- function-preserving transforms of hidden spaces

def orthogonal(n: int, seed: int) -> Arr:
    """A Haar-random n x n orthogonal matrix."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    out: Arr = (q * np.sign(np.diag(r))).astype(np.float32)
    return out


def rotate_residual(t: Model, seed: int = 4, *, scale_units: bool = False, fold_gains: Arr | None = None) -> Model:
    """The QuaRot / SliceGPT transform of a base_model-shaped model, every tensor renamed.

    The residual stream is rotated by a random orthogonal R: the embedding becomes ``E R``, every
    matrix that reads the residual (qkv, mlp.up) ``W R``, every matrix that writes it (attn.out,
    mlp.down) ``R^T W``. With ``fold_gains`` (one positive gain per residual dimension, the
    RMSNorm weights of A) the gains are folded into the readers first (``W diag(g) R``). With
    ``scale_units`` each MLP hidden unit is also scaled by a positive factor (up row times c,
    down column divided by c: exact for ReLU-like activations).
    """
    d = t["embed.weight"].shape[1]
    rot = orthogonal(d, seed)
    r = np.random.default_rng(seed + 1)
    g = np.ones(d, np.float32) if fold_gains is None else fold_gains.astype(np.float32)
    out: Model = {}
    for k, v in t.items():
        if k == "embed.weight":
            out[k] = v @ rot
        elif k.endswith(("attn.qkv.weight", "mlp.up.weight")):
            out[k] = (v * g) @ rot
        elif k.endswith(("attn.out.weight", "mlp.down.weight")):
            out[k] = rot.T @ v
        else:
            out[k] = v
    if scale_units:
        for k in [k for k in out if k.endswith("mlp.up.weight")]:
            c = np.exp(r.normal(0.0, 0.5, out[k].shape[0])).astype(np.float32)
            out[k] = out[k] * c[:, None]
            down = k.replace("mlp.up.weight", "mlp.down.weight")
            out[down] = out[down] / c[None, :]
    return {f"rotated.{i}": np.ascontiguousarray(out[k], dtype=np.float32) for i, k in enumerate(sorted(out))}
