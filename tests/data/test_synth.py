"""The synthetic teacher dataset: deterministic, valid against the registry, paper-like statistics."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest

from vedit.data.looks import load_looks
from vedit.data.rows import read_truth
from vedit.data.synth import generate, write_dataset
from vedit.errors import RegistryError
from vedit.registry.schema import tool_schema

# The paper's tool-use counts (used / all) per split.
PAPER_RATES = {
    "train": {"adjust": 7570 / 8252, "selective_adjust": 2647 / 8252, "filter": 5448 / 8252},
    "test": {"adjust": 912 / 1000, "selective_adjust": 356 / 1000, "filter": 683 / 1000},
}


@pytest.fixture(scope="module")
def ds():
    return generate(seed=0)


def test_sizes_and_unique_intents(ds):
    assert (len(ds.train), len(ds.test)) == (8252, 1000)
    intents = [r.intent for r in ds.train + ds.test]
    assert len(set(intents)) == 9252
    assert all(i == i.strip() and i for i in intents)


def test_deterministic_for_a_seed():
    a = generate(seed=3, n_intents=400, n_test=50)
    b = generate(seed=3, n_intents=400, n_test=50)
    c = generate(seed=4, n_intents=400, n_test=50)
    assert a == b
    assert [r.intent for r in a.test] != [r.intent for r in c.test]


def test_every_row_validates_against_the_json_schemas(ds, registry):
    validators = {t.name: jsonschema.Draft202012Validator(tool_schema(t)) for t in registry.tools}
    for row in ds.train + ds.test:
        value = row.to_json()
        assert value["calls"] >= 1
        for name, validator in validators.items():
            validator.validate(value[name])


@pytest.mark.parametrize("split", ["train", "test"])
def test_tool_use_rates_near_the_paper(ds, split, registry):
    rows = getattr(ds, split)
    stats = ds.stats["splits"][split]
    for tool in registry.tool_names:
        rate = sum(r.calls_by_tool[tool].used for r in rows) / len(rows)
        assert stats["use_rates"][tool] == pytest.approx(rate, abs=1e-4)
        assert abs(rate - PAPER_RATES[split][tool]) < 0.04, (split, tool, rate)


def test_popularity_subsets(ds):
    for split in ("train", "test"):
        rows = getattr(ds, split)
        r3 = sum(r.calls >= 3 for r in rows) / len(rows)
        r5 = sum(r.calls >= 5 for r in rows) / len(rows)
        assert 0.18 <= r3 <= 0.32 and 0.08 <= r5 <= 0.2, (split, r3, r5)
        assert ds.stats["splits"][split]["subsets"]["r_5"] == sum(r.calls >= 5 for r in rows)


def test_test_split_reuses_train_looks(ds):
    assert ds.stats["test_intents_with_looks_seen_in_train"] >= 0.95


def test_write_dataset_round_trip(tmp_path):
    small = generate(seed=1, n_intents=300, n_test=40)
    paths = write_dataset(small, tmp_path / "data")
    assert read_truth(paths["train"]) == small.train
    assert read_truth(paths["test"]) == small.test
    stats = json.loads(paths["stats"].read_text(encoding="utf-8"))
    assert stats["seed"] == 1 and stats["splits"]["test"]["n"] == 40
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["stats.json", "test.jsonl", "train.jsonl"]


def test_bad_split_sizes():
    with pytest.raises(ValueError, match="n_test"):
        generate(n_intents=10, n_test=10)


def test_look_library_matches_registry(registry):
    lib = load_looks(registry)
    assert 120 <= len(lib.looks) <= 200
    for look in lib.looks:
        assert set(look.targets) == set(registry.tool_names)


def test_look_library_errors_name_the_problem(tmp_path, registry):
    raw = json.loads((resources.files("vedit.data") / "looks.json").read_text(encoding="utf-8"))
    flat = next(t for t in registry.tools if not t.categories and len(t.slots[0]) == 1)
    preset = next(t for t in registry.tools if t.categories)
    raw["traits"][flat.name]["warm"]["warmth"] = 10
    raw["looks"][0][preset.name] = {"name": "sepia_deluxe", "intensity": 10}
    path = tmp_path / "looks.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        load_looks(registry, path)
    assert "warmth" in str(info.value) and "sepia_deluxe" in str(info.value)
