"""The playground page in a real headless browser (Debian's chromium driven by Selenium).

Screenshots are kept as test artifacts under pytest's tmp dir (the path is printed). In CI the
browser must be there (scripts/system-deps.sh installs it); elsewhere, without chromium, skip.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from vedit.client import connect
from vedit.render.playground import make_server, url_of

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _need_browser():
    if CHROMIUM and CHROMEDRIVER:
        return
    if os.environ.get("CI"):
        pytest.fail("chromium/chromedriver missing in CI: scripts/system-deps.sh must install them")
    pytest.skip("Debian's chromium and chromium-driver are not installed (bash scripts/system-deps.sh installs them)")


@pytest.fixture(scope="module")
def served(tiny_export):
    client = connect(tiny_export)
    server = make_server(client, "127.0.0.1", 0, max_upload=2_000_000)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url_of(server), client
    server.shutdown()
    server.server_close()
    client.close()


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1100",
                "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _wait_for(driver, predicate, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: predicate(d))


def _text(driver, id_):
    return driver.find_element("id", id_).text


def _ask(driver, url, intent, photo=None):
    from selenium.webdriver.common.keys import Keys

    driver.get(url)
    _wait_for(driver, lambda d: len(d.find_elements("css selector", "#sample option")) == 3)
    if photo is not None:
        driver.find_element("id", "photo").send_keys(str(photo))
    box = driver.find_element("id", "intent")
    box.clear()
    box.send_keys(intent, Keys.ENTER)  # Enter submits the form
    _wait_for(driver, lambda d: "latency" in _text(d, "status") or _text(d, "error"))


def test_golden_hour_shows_the_calls_the_photos_and_the_latency(browser, served, tmp_path):
    url, client = served
    _ask(browser, url, "golden hour")
    assert _text(browser, "error") == ""
    (expected,) = client.predict(["golden hour"])
    shown = json.loads(browser.find_element("id", "calls").get_attribute("textContent"))
    assert shown == {k: c.as_value() for k, c in expected.calls.items()}
    for img in ("before", "after"):
        assert browser.find_element("id", img).get_attribute("src").startswith("data:image/png;base64,")
        assert browser.execute_script(f"return document.getElementById('{img}').naturalWidth") == 512
    assert "latency" in _text(browser, "status") and "512×512 px" in _text(browser, "status")
    shot = tmp_path / "playground-golden-hour.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    assert Image.open(shot).size[0] > 800


def test_keyboard_labels_and_focus_order(browser, served):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    url, _ = served
    browser.get(url)
    _wait_for(browser, lambda d: len(d.find_elements("css selector", "#sample option")) == 3)
    for id_ in ("intent", "sample", "photo"):
        assert browser.find_elements("css selector", f"label[for={id_}]"), f"{id_} has no label"
    active = lambda: browser.switch_to.active_element.get_attribute("id")  # noqa: E731
    assert active() == "intent"  # autofocus: type at once
    order = []
    for _ in range(3):
        ActionChains(browser).send_keys(Keys.TAB).perform()  # to the page: a file input takes keys as a path
        order.append(active())
    assert order == ["sample", "photo", "submit"]


def test_your_own_photo_and_a_non_image(browser, served, tmp_path):
    url, _ = served
    own = tmp_path / "own.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(own)
    _ask(browser, url, "cold tone", own)
    assert _text(browser, "error") == ""
    assert browser.execute_script("return document.getElementById('before').naturalWidth") == 120
    assert "120×90 px" in _text(browser, "status")

    notes = tmp_path / "notes.png"
    notes.write_text("these are notes, not a photo\n" * 20)
    _ask(browser, url, "cold tone", notes)
    error = _text(browser, "error")
    assert error.startswith("your photo: not an image") and "\n" not in error
    assert "Traceback" not in browser.page_source
    browser.save_screenshot(str(tmp_path / "playground-error.png"))

    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 2_100_000)
    _ask(browser, url, "cold tone", big)
    assert _text(browser, "error") == "photo of 2.1 MB is over the limit of 2 MB; pick a smaller one"


def test_the_api_bounds_uploads_and_answers_errors_in_one_line(served):
    url, _ = served
    req = urllib.request.Request(url + "api/edit?intent=x", data=b"\0" * 2_000_001, method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 413 and "over the limit of 2 MB" in json.loads(err.value.read())["error"]
    with urllib.request.urlopen(url + "api/samples", timeout=30) as res:
        assert json.loads(res.read())["max_upload"] == 2_000_000
    req = urllib.request.Request(url + "api/edit?intent=%20", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400 and json.loads(err.value.read()) == {
        "error": "intent: empty intent; type a look, e.g. golden hour"}


def test_a_request_for_another_host_name_is_refused(served):
    """DNS rebinding: a page from elsewhere that resolves its own name to 127.0.0.1 gets nothing."""
    url, _ = served
    req = urllib.request.Request(url + "api/samples", headers={"Host": "evil.example:80"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 403 and "refused" in json.loads(err.value.read())["error"]
    req = urllib.request.Request(url + "api/samples", headers={"Host": "localhost"})
    with urllib.request.urlopen(req, timeout=30) as res:
        assert res.status == 200
