"""``vedit preview`` end to end on the tiny export: the file shows the client's own answer."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from vedit.cli import cli
from vedit.client import connect
from vedit.render.engine import Renderer
from vedit.render.photo import load_photo

pytestmark = pytest.mark.slow


@pytest.fixture()
def photo(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "in.png"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path, icc_profile=icc)
    return path


def test_one_intent_one_photo_is_the_edited_photo(tiny_export, photo, tmp_path):
    out = tmp_path / "out.png"
    res = CliRunner().invoke(cli, ["preview", "golden hour", "--image", str(photo), "-o", str(out),
                                   "--model", str(tiny_export)])
    assert res.exit_code == 0, res.output
    assert "golden hour:" in res.output and "rendered in" in res.output
    with connect(tiny_export) as client:
        (answer,) = client.predict(["golden hour"])
    expected, _ = Renderer.default().render(load_photo(photo).pixels, answer.calls)
    written = Image.open(out)
    assert written.info.get("icc_profile") == Image.open(photo).info["icc_profile"]
    np.testing.assert_array_equal(np.asarray(written), np.round(np.clip(expected, 0, 1) * 255).astype(np.uint8))


def test_several_intents_and_photos_give_a_grid(tiny_export, photo, tmp_path):
    out = tmp_path / "grid.png"
    res = CliRunner().invoke(cli, ["preview", "golden hour", "cold tone", "--image", str(photo), "--image",
                                   str(photo), "-o", str(out), "--model", str(tiny_export), "--json"])
    assert res.exit_code == 0, res.output
    assert res.output.count('"intent"') == 2
    w, h = Image.open(out).size
    assert h > 2 * 256 and w > 3 * 256 * 80 / 60  # two rows; before + two answers per row


def test_bad_inputs_are_one_line(tiny_export, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    res = CliRunner().invoke(cli, ["preview", "x", "--image", str(notes), "-o", str(tmp_path / "o.png"),
                                   "--model", str(tiny_export)])
    assert res.exit_code == 1 and res.output.strip().startswith("error: notes.png: not an image")
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "o.png").exists()
    res = CliRunner().invoke(cli, ["preview", "x", "--image", str(notes), "-o", str(tmp_path / "o.png")])
    assert res.exit_code == 2 and "--model EXPORT_DIR or --url URL" in res.output


@pytest.mark.triton
def test_through_a_triton_server_the_picture_is_the_same(triton_served, tiny_export, photo, tmp_path):
    local, remote = tmp_path / "local.png", tmp_path / "remote.png"
    for out, target in ((local, ["--model", str(tiny_export)]), (remote, ["--url", triton_served.http])):
        res = CliRunner().invoke(cli, ["preview", "golden hour", "welding mask", "--image", str(photo), "-o", str(out),
                                       *target])
        assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(np.asarray(Image.open(local)), np.asarray(Image.open(remote)))


VIDEO = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples" / "tools" / "video.json"


def _export_with(functions, tiny_t5_dir, out):
    from support import quick_export
    from vedit.registry import registry_from_dict

    quick_export(tiny_t5_dir, out, registry=registry_from_dict(functions))
    return out


def test_tools_the_renderer_cannot_draw_are_named(tiny_t5_dir, photo, tmp_path):
    """A custom tools file: the preview names every tool it does not draw (never in silence), and
    refuses in one line when it can draw none of them."""
    import json

    from vedit.registry import default_registry

    video = json.loads(VIDEO.read_text())
    mixed = _export_with([*default_registry().functions, video[2]], tiny_t5_dir, tmp_path / "mixed")
    res = CliRunner().invoke(cli, ["preview", "golden hour", "--image", str(photo), "-o", str(tmp_path / "a.png"),
                                   "--model", str(mixed)])
    assert res.exit_code == 0, res.output
    assert "not rendered: tool vignette (no renderer" in res.output and (tmp_path / "a.png").is_file()
    only = _export_with(video, tiny_t5_dir, tmp_path / "video")
    res = CliRunner().invoke(cli, ["preview", "slow motion", "--image", str(photo), "-o", str(tmp_path / "b.png"),
                                   "--model", str(only)])
    assert res.exit_code == 1 and not (tmp_path / "b.png").exists()
    assert res.output.strip().splitlines() == [
        "error: the renderer draws adjust, selective_adjust, filter; none of this model's tools (speed, caption, "
        "vignette) can be drawn: use `vedit predict` for the answers"]
