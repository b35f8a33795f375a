"""Debian's headless chromium driven by Selenium (the system chromedriver: nothing is downloaded),
and a static file server on 127.0.0.1 like `python -m http.server` (the same handler)."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


@contextmanager
def static_server(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) with http.server's own handler; yields the URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def chromium(profile: Path) -> Iterator["object"]:
    """A headless chromium (root: --no-sandbox) with its own profile directory."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.fail("chromium and chromedriver are needed (bash scripts/system-deps.sh installs them)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--user-data-dir={profile}", "--window-size=1100,700"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def wait_answered(driver, count: int = 1, timeout: float = 120) -> None:
    """Until the page has shown ``count`` answers (or failed: then its status line is the error)."""
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d):
        state = d.execute_script("return [document.body.dataset.state, Number(document.body.dataset.answered || 0)]")
        return state[0] == "failed" or state[1] >= count

    WebDriverWait(driver, timeout, poll_frequency=0.02).until(done)
    status = driver.execute_script("return document.body.dataset.state")
    assert status != "failed", driver.find_element("id", "status").text


def code_units(text: str) -> list[int]:
    """UTF-16 code units: how an intent with lone surrogates or NULs reaches a page intact (the
    WebDriver protocol's JSON refuses lone surrogates)."""
    data = text.encode("utf-16-le", "surrogatepass")
    return [int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)]


#: Answer one intent (as code units) the way the text box does (the page's own answer function,
#: which renders #answer), then ask the page's student for the same intent with its tokens and costs.
ASK = """
const [units, done] = arguments;
const intent = String.fromCharCode(...units);
const shown = Number(document.body.dataset.answered);
vedit.answer(intent).then(async () => {
  const full = await vedit.student.predict(intent, {stats: true, trace: true});
  // as JSON text: JSON.stringify escapes lone surrogates, which the protocol cannot carry
  done(JSON.stringify({shown: document.getElementById("answer").textContent, count: Number(document.body.dataset.answered) - shown, full}));
}, (e) => done(JSON.stringify({error: String(e)})));
"""
