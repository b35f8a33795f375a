"""Fixtures of the browser tests: the JavaScript runtime built from web/ (npm packages from
`npm ci`, which scripts/test.sh runs), tiny T5 exports (fp32, int8) and their static sites, and
the Python runtime's answers they must reproduce."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support import quick_export
from web_cases import WEB, node


@pytest.fixture(scope="session")
def web_runtime(tmp_path_factory) -> Path:
    """web/dist, built now from web/src with the locked npm packages (as scripts/web.sh does)."""
    if not (WEB / "node_modules" / "onnxruntime-web").is_dir():
        pytest.fail("web/node_modules is missing: run `bash scripts/web.sh` (npm ci in web/); scripts/test.sh does")
    out = tmp_path_factory.mktemp("web") / "dist"
    subprocess.run([node(), str(WEB / "build.mjs"), str(out)], check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="session")
def exports(export_root, tiny_export, llama_fp32, tiny_t5_dir, tiny_llama_dir) -> dict[str, Path]:
    """"family-precision" -> a tiny export (the shared fp32 ones, int8 made here)."""
    return {
        "t5-fp32": tiny_export,
        "t5-int8": quick_export(tiny_t5_dir, export_root / "t5-int8-web", family="t5", precision="int8").out_dir,
        "llama-fp32": llama_fp32.out_dir,
        "llama-int8": quick_export(tiny_llama_dir, export_root / "llama-int8-web", family="llama",
                                   precision="int8").out_dir,
    }


@pytest.fixture(scope="session")
def sites(tmp_path_factory, web_runtime, exports) -> dict[str, Path]:
    """"family-precision" -> the export's site, built by `vedit web build`'s library function."""
    from vedit.web import build_site

    root = tmp_path_factory.mktemp("sites")
    return {name: build_site(d, root / name, runtime=web_runtime).out_dir for name, d in exports.items()}
