"""The court report in Debian's headless Chromium (Selenium, chromedriver): the lineage graph is drawn
and the verdict is visible, as a person opening report.html would see them; the page prints to PDF."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from references import require_chromium
from report_kit import Story, make_story

from client.core.bundle import verify_bundle
from client.report.build import verified_report
from client.report.evidence import comparison_view
from client.report.html import render_html
from client.report.recheck import Sources


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    s: Story = make_story()
    report = verify_bundle(s.bundle, s.env.log_key)
    view = comparison_view(verify_bundle(s.attestation_bundle, s.env.log_key), s.evidence, report, "attestations[0]")
    court = verified_report(s.bundle, report, Sources("bundle.json", "log.pub", s.env.log_key), comparisons=(view,))
    s.env.close()
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_html(court), encoding="utf-8")
    yield path


def test_chromium_draws_the_lineage_and_shows_the_verdict(report_html: Path) -> None:
    browser, driver_path = require_chromium()
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(report_html.as_uri())
        status = driver.find_element(By.ID, "status")
        assert status.is_displayed() and status.text.startswith("VERIFIED")
        svg = driver.find_element(By.ID, "lineage-graph")
        driver.execute_script("arguments[0].scrollIntoView()", svg)
        assert svg.is_displayed() and svg.size["width"] > 300 and svg.size["height"] > 300
        boxes = svg.find_elements(By.CSS_SELECTOR, "g.node rect")
        assert len(boxes) == 4 and all(b.size["width"] > 100 for b in boxes)
        labels = {t.text for t in svg.find_elements(By.CSS_SELECTOR, "text.relation")}
        assert {"quantization", "fine-tune", "descent-test: related"} <= labels
        shot = Image.open(io.BytesIO(svg.screenshot_as_png)).convert("L")
        dark = sum(shot.histogram()[:128])
        assert dark > 2000, f"the lineage graph looks blank ({dark} dark pixels)"
        verdict = driver.find_element(By.ID, "verdict-0")
        driver.execute_script("arguments[0].scrollIntoView()", verdict)
        assert verdict.is_displayed() and verdict.text == "related"
        pdf = base64.b64decode(driver.print_page())  # the page prints (what a court's browser would file)
        assert pdf.startswith(b"%PDF-") and len(pdf) > 10_000
    finally:
        driver.quit()
