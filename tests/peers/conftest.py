"""What the Llama peers' end-to-end tests share: the opt-in gate, the scripts, the rows' lifetime."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest

from vedit.peers.env import env_path, is_ready
from vedit.workload.scripted import Script, load_scripts
from vedit.data.rows import write_jsonl
from vedit.data.synth import generate


def skip_unless_env(name: str, requirements, why: str) -> None:
    """Skip (before any model is built) unless the peer env exists, or ``VEDIT_PEER_TESTS=1`` may build it."""
    if os.environ.get("VEDIT_PEER_TESTS") != "1" and not is_ready(env_path(name, requirements)):
        pytest.skip(f"no {name} peer env under the home (VEDIT_PEER_TESTS=1 builds it: {why})")


def tiny_scripts(tmp: Path, export_dir: Path) -> list[Script]:
    """Three seeded truth answers as scripts for the tiny Llama export."""
    path = tmp / "test.jsonl"
    write_jsonl(path, [r.to_json() for r in generate(seed=5, n_intents=60, n_test=3).test])
    return load_scripts(export_dir, 3, truth=path)


@contextmanager
def peer_rows(module: ModuleType, cache_attr: str, cache: Path, *, student_dir: Path, export_dir: Path,
              scripts: list[Script]) -> Iterator[dict]:
    """``module.paths(...)`` on the tiny Llama with its conversions cached in ``cache`` (not the home);
    every worker is closed afterwards."""
    mp = pytest.MonkeyPatch()
    mp.setattr(module, cache_attr, lambda: cache)
    got: dict = {}
    try:
        got = module.paths(student_dir=student_dir, exports={"fp32": export_dir},
                           scripts={s.intent: s for s in scripts}, threads=1)
        yield got
    finally:
        for call in got.values():
            call.worker.close()
        mp.undo()


def peer_fixtures(module: ModuleType, name: str, cache_attr: str, why: str):
    """``env_ready``, ``scripts`` and ``rows`` module fixtures for one Llama peer module (assign them
    to those names in the test module): the opt-in gate, tiny scripts, both rows on the tiny Llama."""

    @pytest.fixture(scope="module")
    def env_ready():
        skip_unless_env(name, module.REQUIREMENTS, why)

    @pytest.fixture(scope="module")
    def scripts(env_ready, tmp_path_factory, llama_fp32):
        return tiny_scripts(tmp_path_factory.mktemp(f"{name}-scripts"), llama_fp32.out_dir)

    @pytest.fixture(scope="module")
    def rows(env_ready, tmp_path_factory, tiny_llama_dir, llama_fp32, scripts):
        with peer_rows(module, cache_attr, tmp_path_factory.mktemp(f"{name}-models"), student_dir=tiny_llama_dir,
                       export_dir=llama_fp32.out_dir, scripts=scripts) as got:
            yield got

    return env_ready, scripts, rows


#: answers outside the grammar: steering a peer to them must not make it write them
BAD_TEXTS = {"adjust": '{"exposure":101,"contrast":0}', "selective_adjust": '{"red":{}}',
             "filter": '{"name":"nope","intensity":-5}'}


def hostile_script(export_dir: Path) -> Script:
    """A script of :data:`BAD_TEXTS` in the export's token ids."""
    from vedit.decoding.vocab import load_tokenizer

    tok = load_tokenizer(export_dir).tokenizer
    return Script("hostile steering", {t: tuple(tok.encode(x, add_special_tokens=False).ids) for t, x in BAD_TEXTS.items()},
                  dict(BAD_TEXTS))
