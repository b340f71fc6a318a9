"""The report's witnesses: the checkpoint's cosignature lines sorted as verify sorts them (--policy FILE):
verified with the witness's time, missing witnesses named, unknown lines listed as unverified only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from report_kit import Story, cosign, make_story

from client.cli import main


@pytest.fixture(scope="module")
def story() -> Iterator[Story]:
    s = make_story()
    yield s
    s.env.close()


def _section(html: str, name: str) -> str:
    found = re.search(rf'<section id="{name}">(.*?)</section>', html, re.S)
    assert found is not None, name
    return found.group(1)


def _files(story: Story, tmp_path: Path, policy: str) -> tuple[Path, Path, Path]:
    f = story.write(tmp_path)
    cosigned, vkey = cosign(story.bundle, "witness.example/w1", bytes(range(32)))
    f["bundle"].write_bytes(cosigned)
    _, other = cosign(story.bundle, "witness.example/w2", bytes(range(1, 33)))
    (tmp_path / "policy.txt").write_text(policy.format(w1=vkey, w2=other))
    return f["bundle"], f["log_key"], tmp_path / "policy.txt"


def test_policy_met_lists_the_witness_with_its_time(story: Story, tmp_path: Path) -> None:
    bundle, key, policy = _files(story, tmp_path, "witness w1 {w1}\nwitness w2 {w2}\nquorum w1\n")
    out = tmp_path / "r.html"
    assert main(["report", str(bundle), "--log-key", str(key), "--policy", str(policy), "-o", str(out)]) == 0
    html = out.read_text()
    wit = _section(html, "witnesses")
    assert "quorum &#39;w1&#39;: met" in wit
    assert re.search(r'class="witness verified"><td><code>w1</code></td><td>verified</td>\s*<td>cosigned this '
                     r"checkpoint at 2025-12-06 05:46:40 UTC \(the witness&#39;s claim\)", wit)
    assert '<tr class="witness absent"><td><code>w2</code>' in wit
    assert "--policy policy.txt" in _section(html, "checks")
    assert "witness.example/w1" in _section(html, "checks")  # the note reprinted holds the verified line


def test_policy_not_met_is_not_verified_naming_the_missing_witness(story: Story, tmp_path: Path) -> None:
    bundle, key, policy = _files(story, tmp_path, "witness w1 {w1}\nwitness w2 {w2}\nquorum w2\n")
    out = tmp_path / "r.html"
    args = ["--log-key", str(key), "--policy", str(policy)]
    assert main(["report", str(bundle), *args, "-o", str(out)]) == 1 == main(["verify", str(bundle), *args])
    html = out.read_text()
    title = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    assert title is not None and title.group(1).startswith("NOT VERIFIED") and "checkpoint" in title.group(1)
    assert "w2" in re.search(r'<p id="lead"[^>]*>(.*?)</p>', html, re.S).group(1)  # type: ignore[union-attr]
    assert '<tr class="witness missing"><td><code>w2</code>' in _section(html, "witnesses")


def test_without_a_policy_a_cosignature_is_only_an_unverified_line(story: Story, tmp_path: Path) -> None:
    bundle, key, _ = _files(story, tmp_path, "quorum none\n")
    out = tmp_path / "r.html"
    assert main(["report", str(bundle), "--log-key", str(key), "-o", str(out)]) == 0
    wit = _section(out.read_text(), "witnesses")
    assert "No witness policy was given" in wit
    assert '<tr class="witness unverified"><td><code>witness.example/w1</code></td><td>unverified</td>' in wit
    assert "witness.example/w1" not in _section(out.read_text(), "checks")  # not reprinted as signed
