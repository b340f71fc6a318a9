"""Hashing and the canonical walk: digests independent of buffers/threads, sensitive to every byte and path."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.core.manifest import manifest_digest
from client.core.manifest.errors import WalkError
from client.core.manifest.model import FileEntry, SymlinkEntry
from client.hashing import HashConfig, hash_path
from client.hashing.hashing import Hasher
from client.hashing.walk import WalkItem
from tests import test_manifest_support as kit
from tests.references import require_b3sum

CS = 1024
SIZES = [0, 1, 1023, 1024, 1025, 2048, 5000, 70_001]


def _tree(root: Path) -> Path:
    for n in SIZES:
        kit.write(root / "plain" / f"f{n:06d}", os.urandom(n))
    for i, n in enumerate([5000, 10, 6000, 0, 20, 7000, 7001, 1, 2, 3, 8000]):  # large and small interleaved
        kit.write(root / "mixed" / f"m{i:02d}", os.urandom(n))
    kit.model_folder(root / "model")
    kit.write(root / "big.safetensors", kit.safetensors_bytes({
        "a": kit.tensor("F32", [1000], 1), "b": kit.tensor("U8", [3001], 2), "c": kit.tensor("F16", [1500], 3),
    }))
    return root


def _naive(content: bytes, cs: int) -> tuple[bytes, tuple[bytes, ...]]:
    return blake3.blake3(content).digest(), tuple(
        blake3.blake3(content[o : o + cs]).digest() for o in range(0, len(content), cs)
    )


CONFIGS = [
    HashConfig(chunk_size=CS, threads=1, read_size=1, mmap_threshold=1 << 30),
    HashConfig(chunk_size=CS, threads=2, read_size=100, mmap_threshold=1 << 30, inline_size=0),
    HashConfig(chunk_size=CS, threads=2, mmap_threshold=3000, inline_size=1500, max_pending=2),
    HashConfig(chunk_size=CS, threads=2, mmap_threshold=0, inline_size=1 << 30),
    HashConfig(chunk_size=CS, threads=1, read_size=7, mmap_threshold=1 << 30),
    HashConfig(chunk_size=CS, threads=2, read_size=1000, mmap_threshold=2048),
    HashConfig(chunk_size=CS, threads=4, read_size=1 << 20, mmap_threshold=0),
    HashConfig(chunk_size=CS, threads=2, mmap_threshold=0, map_window=4096),
    HashConfig(chunk_size=CS, threads=1, mmap_threshold=0, map_window=8192),
    HashConfig(chunk_size=CS, threads=3, read_size=4096, mmap_threshold=0, max_pending=1),
]


def _check_pieces(f: FileEntry, content: bytes) -> None:
    """Fixed chunks equal the naive ones; a tiled file's header and tensors are BLAKE3 of their ranges."""
    if f.header is None:
        assert (f.blake3, f.chunks) == _naive(content, CS), f.path
        return
    assert f.blake3 == blake3.blake3(content).digest() and f.chunks == ()
    assert f.header == blake3.blake3(content[: f.header_end]).digest(), f.path
    for t in f.tensors:
        assert t.blake3 == blake3.blake3(content[t.start : t.end]).digest(), (f.path, t.name)


@pytest.mark.parametrize("version", [1, 2])
def test_digests_do_not_depend_on_read_size_threads_or_path_taken(tmp_path: Path, version: int) -> None:
    root = _tree(tmp_path / "t")
    manifests = [hash_path(str(root), replace(c, version=version)) for c in CONFIGS]
    assert all(m == manifests[0] for m in manifests)
    assert all(m.version == version for m in manifests)
    for f in manifests[0].files:
        _check_pieces(f, (root / f.path).read_bytes())
    tiled = {f.path for f in manifests[0].files if f.header is not None}
    assert tiled == ({p for p in (f.path for f in manifests[0].files) if p.endswith(".safetensors")}
                     if version == 2 else set())
    assert len({manifest_digest(m) for m in manifests}) == 1


@settings(max_examples=30)
@given(st.binary(max_size=9000), st.integers(1, 5000), st.integers(0, 9000), st.integers(1, 3))
def test_any_content_any_buffer_matches_naive(content: bytes, read_size: int, threshold: int, threads: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = kit.write(Path(d) / "f", content)
        cfg = HashConfig(chunk_size=CS, threads=threads, read_size=read_size, mmap_threshold=threshold)
        (f,) = hash_path(str(p), cfg).files
    assert (f.blake3, f.chunks) == _naive(content, CS)


def test_every_byte_changes_the_file_and_exactly_its_chunk(tmp_path: Path) -> None:
    content = bytes(range(256)) * 10  # 2560 bytes: chunks of 1024, 1024, 512
    p = kit.write(tmp_path / "f", content)
    base = hash_path(str(p), HashConfig(chunk_size=CS, threads=1))
    d0 = manifest_digest(base)
    with Hasher(HashConfig(chunk_size=CS, threads=1, mmap_threshold=0)) as h:
        for i in range(len(content)):
            mutated = bytearray(content)
            mutated[i] ^= 0x80
            p.write_bytes(mutated)
            (f,) = list(h.entries(iter([WalkItem(path="f", abspath=str(p))])))
            assert isinstance(f, FileEntry)
            assert f.blake3 != base.files[0].blake3
            changed = [k for k in range(3) if f.chunks[k] != base.files[0].chunks[k]]
            assert changed == [i // CS]
    p.write_bytes(content)
    assert manifest_digest(hash_path(str(p), HashConfig(chunk_size=CS, threads=1))) == d0


def test_every_path_change_changes_the_manifest_digest(tmp_path: Path) -> None:
    root = kit.dataset_folder(tmp_path / "d", files=12)
    cfg = HashConfig(chunk_size=CS, threads=2)
    d0 = manifest_digest(hash_path(str(root), cfg))
    seen = {d0}
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        moved = f.with_name(f.name + "x")
        f.rename(moved)
        seen.add(manifest_digest(hash_path(str(root), cfg)))
        moved.rename(f)
    assert len(seen) == 13
    assert manifest_digest(hash_path(str(root), cfg)) == d0
    assert manifest_digest(hash_path(str(root), HashConfig(chunk_size=2 * CS, threads=2))) != d0


def test_whole_file_digests_equal_b3sum(tmp_path: Path) -> None:
    b3sum = require_b3sum()
    root = _tree(tmp_path / "t")
    m = hash_path(str(root), HashConfig(chunk_size=CS, threads=2, mmap_threshold=4096))
    paths = [f.path for f in m.files]
    out = subprocess.run([b3sum, "--", *paths], cwd=root, check=True, capture_output=True, text=True).stdout
    theirs = {line[66:]: line[:64] for line in out.splitlines()}
    assert {f.path: f.blake3.hex() for f in m.files} == theirs


def test_walk_order_is_code_point_order_of_full_paths(tmp_path: Path) -> None:
    for rel in ["a/x", "a-b", "a.c", "B", "b/c/d", "\u00e9", "a0"]:
        kit.write(tmp_path / rel, rel.encode())
    m = hash_path(str(tmp_path), HashConfig(chunk_size=CS, threads=2))
    paths = [e.path for e in m.entries]
    assert paths == sorted(paths) == ["B", "a-b", "a.c", "a/x", "a0", "b/c/d", "\u00e9"]


def test_git_entries_are_skipped_at_every_depth(tmp_path: Path) -> None:
    kit.write(tmp_path / "w.bin", b"w")
    for rel in [".git/HEAD", ".gitattributes", ".github/workflows/x.yml", "sub/.gitignore", "sub/.gitmodules"]:
        kit.write(tmp_path / rel, b"g")
    kit.write(tmp_path / "sub" / "y", b"y")
    skipped: list[str] = []
    m = hash_path(str(tmp_path), HashConfig(chunk_size=CS), on_skip=skipped.append)
    assert [e.path for e in m.entries] == ["sub/y", "w.bin"]
    assert sorted(skipped) == [".git", ".gitattributes", ".github", "sub/.gitignore", "sub/.gitmodules"]


def test_empty_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WalkError, match="empty"):
        hash_path(str(tmp_path))
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    kit.write(tmp_path / ".git" / "HEAD", b"ref")
    with pytest.raises(WalkError, match="empty"):
        hash_path(str(tmp_path))


def test_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WalkError, match="cannot read"):
        hash_path(str(tmp_path / "nope"))


def test_non_utf8_names_are_refused(tmp_path: Path) -> None:
    kit.write(tmp_path / "ok", b"x")
    with open(os.path.join(os.fsencode(tmp_path), b"bad-\xff"), "wb") as f:
        f.write(b"x")
    with pytest.raises(WalkError, match="not valid UTF-8"):
        hash_path(str(tmp_path))


def test_symlinks_refused_unless_allowed_then_recorded_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    kit.write(outside / "secret", b"never read")
    root = tmp_path / "root"
    kit.write(root / "w", b"w")
    (root / "to-outside").symlink_to(outside)
    (root / "to-w").symlink_to("w")
    with pytest.raises(WalkError, match="symlink"):
        hash_path(str(root))
    m = hash_path(str(root), HashConfig(chunk_size=CS, allow_symlinks=True))
    assert m.entries[:2] == (SymlinkEntry("to-outside", str(outside)), SymlinkEntry("to-w", "w"))
    assert [f.path for f in m.files] == ["w"]
    (root / "to-w").unlink()
    (root / "to-w").symlink_to("elsewhere")
    assert manifest_digest(hash_path(str(root), HashConfig(chunk_size=CS, allow_symlinks=True))) != manifest_digest(m)


def test_root_symlink_and_special_files_are_refused(tmp_path: Path) -> None:
    kit.write(tmp_path / "d" / "f", b"x")
    (tmp_path / "link").symlink_to(tmp_path / "d")
    with pytest.raises(WalkError, match="symlink"):
        hash_path(str(tmp_path / "link"))
    os.mkfifo(tmp_path / "d" / "fifo")
    with pytest.raises(WalkError, match="not a regular file"):
        hash_path(str(tmp_path / "d"))


def test_single_file_is_recorded_under_its_name(tmp_path: Path) -> None:
    p = kit.write(tmp_path / "deep" / "weights.bin", b"abc" * 1000)
    m = hash_path(str(p), HashConfig(chunk_size=CS))
    assert [f.path for f in m.files] == ["weights.bin"]
    assert m.files[0].size == 3000


def test_large_file_change_during_hash_is_detected(tmp_path: Path) -> None:
    from client.core.manifest.errors import FileChangedError

    p = kit.write(tmp_path / "f", os.urandom(64 * CS))
    calls = 0

    def progress(nbytes: int, nfiles: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            with open(p, "ab") as f:
                f.write(b"more")

    with pytest.raises(FileChangedError):
        hash_path(str(p), HashConfig(chunk_size=CS, threads=1, mmap_threshold=0), progress=progress)


def test_progress_counts_every_byte_and_file(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    totals = [0, 0]

    def progress(nbytes: int, nfiles: int) -> None:
        totals[0] += nbytes
        totals[1] += nfiles

    m = hash_path(str(root), HashConfig(chunk_size=CS, threads=1, mmap_threshold=4096), progress=progress)
    assert totals == [m.total_size, len(m.files)]


def test_worker_processes_give_the_same_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from client.hashing import hashing

    root = _tree(tmp_path / "t")
    kit.dataset_folder(root / "data", files=300)
    (root / "data" / "link").symlink_to("shard-00")
    monkeypatch.setattr(hashing, "_PROCESS_AFTER", 5)
    monkeypatch.setattr(hashing, "_PROCESS_BATCH", 7)
    base = HashConfig(chunk_size=CS, threads=2, mmap_threshold=3000, inline_size=4000, allow_symlinks=True)
    threads_only = hash_path(str(root), base)
    from dataclasses import replace

    from client.hashing import smallfiles

    batches: list[int] = []
    real_submit = smallfiles.WorkerPool.submit

    def counting_submit(self: smallfiles.WorkerPool, cs: int, inline: int, paths: list[str | None]) -> object:
        batches.append(len(paths))
        return real_submit(self, cs, inline, paths)

    monkeypatch.setattr(smallfiles.WorkerPool, "submit", counting_submit)
    with_procs = hash_path(str(root), replace(base, processes=2))
    assert with_procs == threads_only
    assert sum(batches) > 250  # the switch happens right after _PROCESS_AFTER small files
    assert any(f.tensors for f in with_procs.files)


@pytest.mark.parametrize("inline_size", [0, 1 << 20])
def test_entries_stream_with_a_bounded_number_in_flight(tmp_path: Path, inline_size: int) -> None:
    from client.hashing.walk import walk

    root = kit.dataset_folder(tmp_path / "d", files=200)
    pulled = 0

    def counting() -> Iterator[WalkItem]:
        nonlocal pulled
        for item in walk(str(root)):
            pulled += 1
            yield item

    cfg = HashConfig(chunk_size=CS, threads=2, max_pending=16, inline_size=inline_size)
    with Hasher(cfg) as h:
        seen = 0
        for _entry in h.entries(counting()):
            seen += 1
            assert pulled - seen <= 16 + 8  # max_pending, plus one unsent batch
    assert seen == pulled == 200
