"""The report and the MLflow UI, as a person sees them: in a real headless Chromium.

Needs Debian's `chromium` and `chromium-driver` packages (apt-get install -y chromium
chromium-driver) and selenium; a browser that a test tool downloads for itself does not work here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ftsweep.report.runs import load_rows
from ftsweep.report.write import write_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(
            "needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
        )
    pytest.importorskip("selenium", reason="needs selenium (pip install selenium)")
    return chromium, driver


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except Exception:  # not up yet: connection refused, element missing
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)


@pytest.fixture
def mlflow_ui(trial_store, tmp_path):
    """`make ui`'s command on the trial store, on a free port; stopped with its children after the test."""
    uri, _ = trial_store
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow),
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    # Job execution would start background worker processes the UI does not need here.
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    log = (tmp_path / "mlflow-ui.log").open("w")
    server = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until(
            lambda: urllib.request.urlopen(f"{base}/health", timeout=2).status == 200,
            120,
            "mlflow ui",
        )
        yield base
    finally:
        os.killpg(
            server.pid, signal.SIGTERM
        )  # its own session: the server and any workers it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


def _api(base: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{base}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.mark.slow
def test_report_images_load_and_the_mlflow_ui_lists_the_runs(
    trial_store, browser, mlflow_ui, tmp_path
):
    uri, _ = trial_store
    report = write_report(uri, "tiny", tmp_path / "report", target_gpu="a100-80gb")

    # Every image of the HTML report loads in a real browser.
    browser.get((report.parent / "report.html").as_uri())
    _wait_until(
        lambda: browser.execute_script("return document.readyState") == "complete", 30, "the report"
    )
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"
    )
    assert len(images) >= 2
    for src, complete, width in images:
        assert complete and width > 0, f"{src} did not load"
    body = browser.find_element("tag name", "body").text
    assert "Recommendation" in body and "Use " in body and "Experiments per dollar" in body

    # The same runs, through `make ui`'s server: its REST API and its web page.
    names = sorted(r.name for r in load_rows(uri, "tiny"))
    experiment = _api(mlflow_ui, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=tiny")[
        "experiment"
    ]
    runs = _api(
        mlflow_ui, "/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]}
    )["runs"]
    assert sorted(r["info"]["run_name"] for r in runs) == names

    browser.get(f"{mlflow_ui}/#/experiments/{experiment['experiment_id']}/runs")
    page = _wait_until(
        lambda: (
            (text := browser.find_element("tag name", "body").text)
            and all(n in text for n in names)
            and text
        ),
        90,
        "the runs in the MLflow UI",
    )
    assert f"{len(names)} matching runs" in page
