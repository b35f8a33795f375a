"""The page itself, in Debian's headless chromium: `?intent=` answers on load, the text box answers
as the user types, every intent gets the Python runtime's JSON (fp32 all; int8 all but near ties),
and once loaded the page answers with the server gone (service worker cache)."""

from __future__ import annotations

import json

import pytest

from browser import ASK, chromium, code_units, static_server, wait_answered
from web_cases import INTENTS, Reference, compare


@pytest.mark.parametrize("name", ["t5-fp32", "t5-int8", "llama-fp32", "llama-int8"])
def test_page_answers_as_python(sites, exports, tmp_path, name):
    precision = name.split("-")[1]
    ref = Reference(exports[name])
    with static_server(sites[name]) as url, chromium(tmp_path / "profile") as driver:
        driver.get(url + "?intent=golden%20hour")
        wait_answered(driver)
        want, _, _ = ref.answer("golden hour")
        del want["stats"]
        assert json.loads(driver.find_element("id", "answer").text) == want
        assert driver.find_element("id", "latency").text.endswith(" ms")
        driver.set_script_timeout(120)
        got = []
        for intent in INTENTS:
            r = json.loads(driver.execute_async_script(ASK, code_units(intent)))
            assert "error" not in r, r
            shown = json.loads(r["shown"])
            assert r["count"] == 1 and shown == {k: v for k, v in r["full"].items() if k not in ("stats", "trace")}
            got.append(r["full"])
    counts = compare(ref, INTENTS, got, precision=precision)
    print(f"chromium {name}: {counts}")
    if precision == "fp32":
        assert counts["identical"] == len(INTENTS)
    else:
        assert counts["identical"] >= 0.8 * len(INTENTS)


def test_text_box_answers_as_the_user_types(sites, exports, tmp_path):
    ref = Reference(exports["t5-fp32"])
    with static_server(sites["t5-fp32"]) as url, chromium(tmp_path / "profile") as driver:
        driver.get(url)
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.body.dataset.state") != "loading")
        box = driver.find_element("id", "intent")
        box.send_keys("cold tone")
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element("id", "answer").text and json.loads(d.find_element("id", "answer").text)["intent"] == "cold tone")
        want, _, _ = ref.answer("cold tone")
        del want["stats"]
        assert json.loads(driver.find_element("id", "answer").text) == want


def test_offline_once_loaded(sites, exports, tmp_path):
    """The service worker caches every file: with the server gone, a reload still answers."""
    ref = Reference(exports["t5-int8"])
    with chromium(tmp_path / "profile") as driver:
        with static_server(sites["t5-int8"]) as url:
            driver.get(url + "?intent=Morocco")
            wait_answered(driver)
            driver.set_script_timeout(60)
            assert driver.execute_async_script(
                "const done = arguments[0]; navigator.serviceWorker.ready.then(() => done(true), () => done(false));")
        driver.get(url + "?intent=cold%20tone")  # the server is down now
        wait_answered(driver)
        want, _, _ = ref.answer("cold tone")
        del want["stats"]
        assert json.loads(driver.find_element("id", "answer").text) == want


def test_webgpu_build_answers_as_python(web_runtime, exports, tmp_path):
    """`vedit web build --webgpu` ships onnxruntime-web's WebGPU build; headless chromium here has
    no GPU adapter, so the page runs that build's CPU kernels, and must still answer as Python."""
    from vedit.web import build_site

    site = build_site(exports["t5-fp32"], tmp_path / "site", runtime=web_runtime, webgpu=True).out_dir
    assert (site / "ort-wasm-simd-threaded.asyncify.wasm").is_file() and not (site / "ort-wasm-simd-threaded.wasm").exists()
    ref = Reference(exports["t5-fp32"])
    with static_server(site) as url, chromium(tmp_path / "profile") as driver:
        driver.get(url + "?intent=golden%20hour")
        wait_answered(driver)
        assert driver.find_element("id", "backend").text.endswith("wasm, 1 thread(s)")
        driver.set_script_timeout(120)
        got = [json.loads(driver.execute_async_script(ASK, code_units(s)))["full"] for s in INTENTS]
    assert compare(ref, INTENTS, got, precision="fp32")["identical"] == len(INTENTS)
