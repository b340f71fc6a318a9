"""The explorer as a person sees it: Debian's headless Chromium, driven by Selenium, on a running
``provenance serve --http`` holding a small registry made with the CLI (a dataset, three models in
one lineage, a ``compare --attest`` descent test, a dispute)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from descent_fixtures import base_model, noisy, write_safetensors
from references import require_chromium
from servers import free_port, running_server

from client.cli import main
from client.core.note import Signer

pytestmark = pytest.mark.slow


def run(*args: str) -> Any:
    """``provenance ARGS --json`` in this process; its JSON output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    assert code == 0, (args, out.getvalue())
    return json.loads(out.getvalue())


@dataclass
class Explorer:
    url: str
    ids: dict[str, str]
    driver: Any


@pytest.fixture(scope="module")
def explorer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Explorer]:
    browser, chromedriver = require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    tmp = tmp_path_factory.mktemp("explorer")
    base = base_model(31, layers=2, d=64, h=128, vocab=256)
    for name, tensors in (("base", base), ("chat", noisy(base, 0.05, seed=32)), ("chat-q", noisy(base, 0.06, seed=33))):
        write_safetensors(tmp / f"{name}.safetensors", tensors)
    (tmp / "web").mkdir()
    (tmp / "web" / "part-0.txt").write_text("some training text\n" * 50)
    port = free_port()
    with pytest.MonkeyPatch.context() as mp, running_server(tmp / "data", ["--http", f"127.0.0.1:{port}"]) as srv:
        mp.setenv("PROVENANCE_STATE_DIR", str(tmp / "state"))
        s = ["--server", srv.address]
        keys = {}
        for who in ("lab-a", "auditor", "lab-c"):
            keys[who] = str(tmp / f"{who}.key")
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(["keygen", "--out", keys[who]]) == 0
            run("identity", "register", who, "--key", keys[who], *s)
        ids = {"web": run("register", "dataset", str(tmp / "web"), "--name", "web", "--key", keys["lab-a"], *s)["id"]}
        ids["base"] = run("register", "checkpoint", str(tmp / "base.safetensors"), "--name", "base", "--step", "100",
                          "--dataset", "web@1:pretraining", "--key", keys["lab-a"], *s)["id"]
        ids["chat"] = run("register", "checkpoint", str(tmp / "chat.safetensors"), "--name", "chat", "--step", "5",
                          "--parent", "base@100:fine-tune", "--key", keys["lab-a"], *s)["id"]
        ids["chat-q"] = run("register", "checkpoint", str(tmp / "chat-q.safetensors"), "--name", "chat-q",
                            "--step", "1", "--parent", "chat@5:quantization", "--key", keys["lab-a"], *s)["id"]
        attested = run("compare", str(tmp / "chat.safetensors"), str(tmp / "base.safetensors"), "--attest",
                       "--key", keys["auditor"], *s)
        assert "descent test: related" in json.dumps(attested)  # the summary the attestation carries
        ids["dispute"] = run("dispute", ids["chat-q"], "--reason", "chat-q is not a quantization of chat",
                             "--key", keys["lab-c"], *s)["id"]
        url = f"http://127.0.0.1:{port}"
        _wait_http(url)
        opts = Options()
        opts.binary_location = browser
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1600", f"--user-data-dir={tmp / 'chromium'}"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(chromedriver), options=opts)
        try:
            yield Explorer(url, ids, driver)
        finally:
            driver.quit()


def _wait_http(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/log", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def _console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_record_page_draws_the_lineage_and_shows_the_verdict(explorer: Explorer) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By

    d = explorer.driver
    d.get(f"{explorer.url}/record/{explorer.ids['chat']}")
    body = d.find_element(By.TAG_NAME, "body").text
    assert "chat" in body and "fine-tune" in body
    verdict = d.find_element(By.CSS_SELECTOR, "#claims .verdict")
    assert verdict.is_displayed()
    assert verdict.text.startswith("Verdict: related"), verdict.text
    assert "descent test: related" in d.find_element(By.ID, "claims").text
    svg = d.find_element(By.CSS_SELECTOR, "#lineage svg.lineage")
    assert svg.size["width"] > 100 and svg.size["height"] > 100
    nodes = d.find_elements(By.CSS_SELECTOR, "#lineage svg g.node")
    got = {n.get_attribute("data-id") for n in nodes}
    assert got == {explorer.ids[k] for k in ("web", "base", "chat", "chat-q")}
    labels = {t.text for t in d.find_elements(By.CSS_SELECTOR, "#lineage svg g.edge text")}
    assert labels == {"trained-on:pretraining", "fine-tune", "quantization"}
    shot = Image.open(io.BytesIO(svg.screenshot_as_png)).convert("RGB")
    assert shot.width > 100 and shot.height > 100
    colours = shot.getcolors(maxcolors=1 << 16) or []
    inked = sum(n for n, c in colours if c != (255, 255, 255))
    assert len(colours) > 8 and inked > shot.width * shot.height // 50, (len(colours), inked)
    assert _console_errors(d) == []  # no script or style refused by the Content-Security-Policy


def test_verify_in_this_browser(explorer: Explorer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    d = explorer.driver
    d.get(explorer.url + "/")
    pages = list(dict.fromkeys(a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, "table.records a")
                               if "/record/" in (a.get_attribute("href") or "")))
    size = int(d.find_element(By.CSS_SELECTOR, "section.checkpoint p").text.split(":")[1].split()[0])
    assert len(pages) == size
    # Newest first: the last leaf, its neighbour, one in the middle, the second and the first (proofs of
    # different shapes: the right edge, a full left subtree, leaf 0).
    for page in [pages[i] for i in sorted({0, 1, size // 2, size - 2, size - 1})]:
        d.get(page)
        button = d.find_element(By.ID, "verify-button")
        assert button.is_displayed()
        button.click()
        WebDriverWait(d, 10).until(ec.text_to_be_present_in_element((By.ID, "verify-result"), "erified"))
        result = d.find_element(By.ID, "verify-result").text
        index = d.find_element(By.ID, "log-index").text
        assert result.startswith(f"Verified in this browser: record {index} is in the tree of size {size} "), result
    assert _console_errors(d) == []
    # The same log key name and id over another public key: the checkpoint's signature must not verify.
    key = d.find_element(By.ID, "verify").get_attribute("data-key")
    name, key_id, _ = key.split("+", 2)
    other = f"{name}+{key_id}+" + base64.b64encode(b"\x01" + Signer.generate(name).verifier().public_key).decode()
    d.execute_script("document.getElementById('verify').dataset.key = arguments[0]", other)
    button.click()
    WebDriverWait(d, 10).until(ec.text_to_be_present_in_element((By.ID, "verify-result"), "erified"))
    result = d.find_element(By.ID, "verify-result").text
    assert result == "Not verified: the log's signature on the checkpoint does not verify", result


def test_search_from_the_front_page(explorer: Explorer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    d = explorer.driver
    d.get(explorer.url + "/")
    assert "Recent records" in d.find_element(By.TAG_NAME, "body").text
    box = d.find_element(By.CSS_SELECTOR, "main form.search input[name=q]")
    box.send_keys("chat@5")
    box.submit()
    # submit() returns before the results page has loaded: wait for it, not for the old page
    WebDriverWait(d, 20).until(lambda drv: "q=" in drv.current_url
                               and drv.find_elements(By.CSS_SELECTOR, "table.records a"))
    links = [a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, "table.records a")]
    assert f"{explorer.url}/record/{explorer.ids['chat']}" in links
    d.find_element(By.CSS_SELECTOR, f"a[href='/record/{explorer.ids['chat']}']").click()
    WebDriverWait(d, 20).until(lambda drv: drv.current_url.endswith(explorer.ids["chat"]))
    d.get(f"{explorer.url}/record/{explorer.ids['chat-q']}")
    assert "chat-q is not a quantization of chat" in d.find_element(By.ID, "claims").text
    d.get(f"{explorer.url}/log")
    assert "the log's own signature" in d.find_element(By.TAG_NAME, "body").text
    origin = d.find_element(By.CSS_SELECTOR, "main p span.mono").text
    d.find_element(By.CSS_SELECTOR, "a[href='/checkpoint']").click()  # the tiles' checkpoint, on the same port
    WebDriverWait(d, 20).until(lambda drv: drv.current_url.endswith("/checkpoint"))
    assert d.find_element(By.TAG_NAME, "body").text.startswith(origin + "\n")
