"""Issue 15, points 5 and 6: JSON documents and record times built to make a parser or a renderer raise.

A safetensors shard index, a manifest JSON, a proof bundle and an audit/trust state nested 100,000 deep
made ``json`` raise RecursionError; a lone surrogate in a bundle's checkpoint made it raise
UnicodeEncodeError; a state file that is not UTF-8 raised UnicodeDecodeError; a record timestamped
2**63 - 1 crashed ``provenance match`` in ``_when`` with OSError. Each is now refused as a FormatError
naming what was wrong (the CLI exits 2), or rendered, never raised.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.cli import match_cmd
from client.core import audit, jsonlimits
from client.core.bundle import verify_bundle
from client.core.bundle.format import BundleFormatError, canonical, parse, to_bytes
from client.core.signer_time import MAX_SECONDS, MIN_SECONDS, signer_time
from client.core.trust import TrustState
from client.errors import FormatError, VerificationError
from client.exit_codes import EXIT_FAILED, EXIT_USAGE
from client.formats import open_model
from ledger.registry.prove import build_bundle
from tests.cli_kit import cli
from tests.descent_fixtures import write_safetensors
from tests.registry_kit import Env, open_env, story

REPO = Path(__file__).resolve().parents[2]
DEEP = 100_000
NESTED = "[" * DEEP + "]" * DEEP


# ---------------------------------------------------------------- the depth measure itself


@pytest.mark.parametrize(("text", "depth"), [
    ("1", 0), ('"[[[["', 0), ("[]", 1), ('{"a": [1, {"b": []}]}', 4), ('["]", "\\"[", "\\\\"]', 1),
    ('["\\u005b"]', 1), ("[[[", 3), ('["unterminated [[[', 1), ('["ends in a backslash \\', 1), ("]]]", 0),
    (NESTED, DEEP),
])
def test_nesting_depth_counts_brackets_outside_strings(text: str, depth: int) -> None:
    assert jsonlimits.nesting_depth(text) == depth
    assert jsonlimits.nesting_depth(text.encode()) == depth


def test_nesting_depth_is_an_upper_bound_on_what_json_reaches() -> None:
    """At the limit json parses; one past it the pre-scan refuses (json itself would go on recursing)."""
    ok = "[" * jsonlimits.MAX_DEPTH + "]" * jsonlimits.MAX_DEPTH
    assert jsonlimits.loads(ok, "doc") == json.loads(ok)
    with pytest.raises(FormatError, match=f"doc nests {jsonlimits.MAX_DEPTH + 1} levels deep"):
        jsonlimits.loads("[" + ok + "]", "doc")


def test_many_escaped_quotes_without_an_end_are_linear() -> None:
    """The string pattern matches wherever it starts (no retry per quote): 10^6 escaped quotes, one pass."""
    text = '["' + '\\" [' * 1_000_000
    assert jsonlimits.nesting_depth(text) == 1


# ---------------------------------------------------------------- proof bundles


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    e = open_env()
    yield e
    e.close()


@pytest.fixture(scope="module")
def bundle(env: Env) -> bytes:
    recs = story(env)
    return to_bytes(build_bundle(env.registry.reader, env.log, env.log_key, recs["grandchild"].id))


def test_bundle_nested_100000_deep_is_refused(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The parser's refusal is a BundleFormatError; ``verify`` reports it, like every other refused byte of a
    bundle (docs/bundle.md), as NOT VERIFIED naming the part, exit 1."""
    data = NESTED.encode()
    with pytest.raises(BundleFormatError, match="bundle: nests 100000 levels deep"):
        parse(data)
    path = tmp_path / "deep.bundle"
    path.write_bytes(data)
    out = cli(capsys, "verify", str(path), "--log-key", env.log_key, code=EXIT_FAILED)
    assert "NOT VERIFIED: bundle: nests 100000 levels deep" in out


@pytest.mark.parametrize("part", ["checkpoint", "origin", "log_key"])
def test_bundle_string_with_a_lone_surrogate_is_refused(env: Env, bundle: bytes, tmp_path: Path, part: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    obj = json.loads(bundle)
    obj[part] = "\ud800" + obj[part]
    data = canonical(obj)  # ASCII JSON: the surrogate is the escape \ud800
    with pytest.raises(BundleFormatError, match=f"{part}: holds a lone surrogate"):
        parse(data)
    with pytest.raises(VerificationError, match=f"{part}: holds a lone surrogate"):
        verify_bundle(data, env.log_key)
    path = tmp_path / "surrogate.bundle"
    path.write_bytes(data)
    out = cli(capsys, "verify", str(path), "--log-key", env.log_key, code=EXIT_FAILED)
    assert f"NOT VERIFIED: {part}: holds a lone surrogate" in out


# ---------------------------------------------------------------- audit and trust state


def test_state_nested_100000_deep_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = '{"version": 1, "logs": ' + NESTED + "}"
    with pytest.raises(FormatError, match="audit state file nests 100001 levels deep"):
        TrustState.from_text(text)
    path = tmp_path / "state.json"
    path.write_text(text)
    out = cli(capsys, "audit", "--state", str(path), "--server", "127.0.0.1:1", code=EXIT_USAGE)
    assert "nests 100001 levels deep" in out


def test_state_that_is_not_utf8_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FormatError, match="not UTF-8"):
        audit.parse_state_bytes(b'{"version": 1, "logs": {"\xff": {}}}')
    path = tmp_path / "state.json"
    path.write_bytes(b"\xff\xfe{")
    assert "not UTF-8" in cli(capsys, "audit", "--state", str(path), "--server", "127.0.0.1:1", code=EXIT_USAGE)


# ---------------------------------------------------------------- manifest JSON and safetensors shard indexes


def test_manifest_json_nested_100000_deep_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(NESTED)
    target = tmp_path / "f.bin"
    target.write_bytes(b"x")
    out = cli(capsys, "hash", str(target), "--verify", str(manifest), "--no-progress", code=EXIT_USAGE)
    assert "neither a canonical manifest nor manifest JSON: it nests 100000 levels deep" in out


def test_safetensors_index_nested_100000_deep_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    folder = tmp_path / "sharded"
    folder.mkdir()
    write_safetensors(folder / "a.safetensors", {"w": np.zeros(4, np.float32)})
    (folder / "model.safetensors.index.json").write_text('{"weight_map": ' + NESTED + "}")
    with pytest.raises(FormatError, match="safetensors index nests 100001 levels deep"):
        list(open_model(folder).tensors())
    out = cli(capsys, "fingerprint", str(folder), "-o", str(tmp_path / "x.plfp"), code=EXIT_USAGE)
    assert "nests 100001 levels deep" in out


# ---------------------------------------------------------------- point 6: signer-chosen times


@pytest.mark.parametrize("ts", [2**63 - 1, -(2**63), 2**64 - 1, MAX_SECONDS + 1, MIN_SECONDS - 1])
def test_out_of_range_record_times_render_as_the_integer(ts: int) -> None:
    """The attack: one registered record with timestamp 2**63 - 1 crashed `provenance match` in _when."""
    assert match_cmd._when(ts) == f"{ts} (unix seconds, outside years 1-9999)"
    assert signer_time(ts, iso=False).startswith(str(ts))


@pytest.mark.parametrize(("ts", "iso", "text"), [
    (0, "1970-01-01T00:00:00Z", "1970-01-01 00:00:00 UTC"),
    (1_700_000_000, "2023-11-14T22:13:20Z", "2023-11-14 22:13:20 UTC"),
    (MIN_SECONDS, "0001-01-01T00:00:00Z", "0001-01-01 00:00:00 UTC"),
    (MAX_SECONDS, "9999-12-31T23:59:59Z", "9999-12-31 23:59:59 UTC"),
])
def test_in_range_record_times_render_as_dates(ts: int, iso: str, text: str) -> None:
    assert match_cmd._when(ts) == iso
    assert signer_time(ts, iso=False) == text


def test_output_the_terminal_cannot_encode_is_escaped(tmp_path: Path) -> None:
    """Under an ASCII-only terminal, names from a file or bundle print escaped instead of crashing the CLI
    with UnicodeEncodeError (stdout is strict by default; stderr already escapes)."""
    path = tmp_path / "mod\u00e8le\u202e.bin"
    path.write_bytes(b"weights")
    got = subprocess.run([sys.executable, "-m", "client.cli", "hash", str(path), "--no-progress"], cwd=REPO,
                         check=False, capture_output=True, env={"PYTHONIOENCODING": "ascii", "PATH": ""})
    assert got.returncode == 0, got.stderr
    assert b"mod\\xe8le\\u202e.bin" in got.stdout
