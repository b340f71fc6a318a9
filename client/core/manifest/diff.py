"""Compare two manifests and say exactly what differs (``provenance hash --verify``).

Pure. :func:`compare` lists every difference: files and symlinks missing,
extra or changed; for a changed file, its size, every differing, missing or
extra chunk (with its byte range) or, for a tiled file (docs/manifest.md, "Tiled
files"), its header region, and every differing, missing or extra tensor; so a
change is localised to a chunk, the header or a tensor. When one side has fixed
chunks and the other is tiled (a version 1 manifest against a version 2 re-hash, or
a file that stopped tiling) their pieces cannot be lined up: a changed file then
reports a "layout" difference and its tensors. :func:`verify` raises
:class:`ManifestMismatchError` carrying the list.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from client.core.manifest.errors import ManifestMismatchError
from client.core.manifest.model import FileEntry, Manifest, SymlinkEntry

Status = Literal["missing", "extra", "changed"]
What = Literal[
    "parameters", "file", "symlink", "type", "size", "chunk", "header", "layout", "tensor", "tensor_format"
]


@dataclass(frozen=True)
class Difference:
    """One difference. ``expected``/``actual`` are hex digests or short texts ("" when absent)."""

    status: Status
    what: What
    path: str
    detail: str = ""
    expected: str = ""
    actual: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        parts = [f"{self.status:<8}", f"{self.what:<8}", self.path]
        if self.detail:
            parts.append(self.detail)
        if self.expected or self.actual:
            parts.append(f"expected {self.expected or '-'} got {self.actual or '-'}")
        return "  ".join(parts)


def _chunks(path: str, cs: int, size: int, exp: FileEntry, act: FileEntry) -> list[Difference]:
    out: list[Difference] = []
    for i in range(max(len(exp.chunks), len(act.chunks))):
        lo = i * cs
        rng = f"#{i} [{lo}, {min(lo + cs, size)})"
        if i >= len(act.chunks):
            out.append(Difference("missing", "chunk", path, rng, exp.chunks[i].hex(), ""))
        elif i >= len(exp.chunks):
            out.append(Difference("extra", "chunk", path, rng, "", act.chunks[i].hex()))
        elif exp.chunks[i] != act.chunks[i]:
            out.append(Difference("changed", "chunk", path, rng, exp.chunks[i].hex(), act.chunks[i].hex()))
    return out


def _tensors(path: str, exp: FileEntry, act: FileEntry) -> list[Difference]:
    out: list[Difference] = []
    if exp.tensor_format != act.tensor_format:
        out.append(Difference("changed", "tensor_format", path, "", exp.tensor_format, act.tensor_format))
    e = {t.name: t for t in exp.tensors}
    a = {t.name: t for t in act.tensors}
    for name in sorted(e.keys() | a.keys()):
        te, ta = e.get(name), a.get(name)
        if ta is None:
            assert te is not None
            out.append(Difference("missing", "tensor", path, name, te.blake3.hex(), ""))
        elif te is None:
            out.append(Difference("extra", "tensor", path, name, "", ta.blake3.hex()))
        elif (te.blake3, te.dtype, te.shape) != (ta.blake3, ta.dtype, ta.shape):
            exp_s = f"{te.dtype}{list(te.shape)}:{te.blake3.hex()}"
            act_s = f"{ta.dtype}{list(ta.shape)}:{ta.blake3.hex()}"
            out.append(Difference("changed", "tensor", path, name, exp_s, act_s))
    return out


def _file(cs: int, exp: FileEntry, act: FileEntry) -> list[Difference]:
    out: list[Difference] = []
    if exp.blake3 != act.blake3:
        out.append(Difference("changed", "file", exp.path, "", exp.blake3.hex(), act.blake3.hex()))
    if exp.size != act.size:
        out.append(Difference("changed", "size", exp.path, "", str(exp.size), str(act.size)))
    if exp.header is None and act.header is None:
        out += _chunks(exp.path, cs, max(exp.size, act.size), exp, act)
    elif exp.header is not None and act.header is not None:
        if (exp.header, exp.header_end) != (act.header, act.header_end):
            exp_s, act_s = f"[0, {exp.header_end}):{exp.header.hex()}", f"[0, {act.header_end}):{act.header.hex()}"
            out.append(Difference("changed", "header", exp.path, f"[0, {exp.header_end})", exp_s, act_s))
    elif exp.blake3 != act.blake3:  # equal file digests mean equal bytes, whatever the pieces
        out.append(Difference("changed", "layout", exp.path, "", _layout(exp), _layout(act)))
    out += _tensors(exp.path, exp, act)
    return out


def _layout(f: FileEntry) -> str:
    return "chunks" if f.header is None else "tiled"


def compare(expected: Manifest, actual: Manifest) -> list[Difference]:
    """Every difference between ``expected`` and ``actual``, in path order. Empty means identical.

    Chunks are compared only when both manifests use the same chunk size;
    otherwise a "parameters" difference is reported instead.
    """
    out: list[Difference] = []
    same_cs = expected.chunk_size == actual.chunk_size
    if not same_cs:
        out.append(
            Difference("changed", "parameters", "", "chunk_size", str(expected.chunk_size), str(actual.chunk_size))
        )
    e, a = expected.by_path(), actual.by_path()
    for path in sorted(e.keys() | a.keys()):
        x, y = e.get(path), a.get(path)
        if y is None:
            assert x is not None
            what: What = "file" if isinstance(x, FileEntry) else "symlink"
            out.append(Difference("missing", what, path, "", x.blake3.hex() if isinstance(x, FileEntry) else x.target))
        elif x is None:
            what = "file" if isinstance(y, FileEntry) else "symlink"
            act = y.blake3.hex() if isinstance(y, FileEntry) else y.target
            out.append(Difference("extra", what, path, "", "", act))
        elif isinstance(x, FileEntry) and isinstance(y, FileEntry):
            if same_cs:
                out += _file(expected.chunk_size, x, y)
            elif x.blake3 != y.blake3 or x.size != y.size:
                out.append(Difference("changed", "file", path, "", x.blake3.hex(), y.blake3.hex()))
        elif isinstance(x, SymlinkEntry) and isinstance(y, SymlinkEntry):
            if x.target != y.target:
                out.append(Difference("changed", "symlink", path, "", x.target, y.target))
        else:
            kx = "file" if isinstance(x, FileEntry) else "symlink"
            ky = "file" if isinstance(y, FileEntry) else "symlink"
            out.append(Difference("changed", "type", path, "", kx, ky))
    return out


def verify(expected: Manifest, actual: Manifest) -> None:
    """Returns None when ``actual`` matches ``expected``; raises ManifestMismatchError listing every difference."""
    diffs = compare(expected, actual)
    if diffs:
        files = len({d.path for d in diffs})
        raise ManifestMismatchError(f"{len(diffs)} differences in {files} paths", differences=tuple(diffs))
