"""Write a Triton model repository for one export directory.

Layout (``NAME`` defaults to ``vedit``)::

    REPO/
      NAME/
        config.pbtxt          generated from the profile and the export's registry snapshot
        warmup/intent         one serialized intent for model_warmup
        1/
          model.py            vedit/triton_repo/triton_model.py
          export/...          a copy of the export directory (ONNX, tokenizer, grammar, manifest)

The repository is self-contained (copies, not links), so it can be mounted into the official
Triton container as is. It is written into a temporary directory next to ``REPO`` and renamed into
place: a failed build leaves nothing behind, and an existing ``REPO`` is replaced only with
``force``. The export is checked twice against its manifest's sha256 (:mod:`vedit.manifest`): the
source before anything is written, and the copy once written, so a file changed on the way never
reaches the repository (the Triton model checks it a third time when it loads).

With ``draft`` the model verifies drafts in its decoder calls (:meth:`vedit.decoding.Predictor.load`,
``draft=True``). Whether an export can is a property of its decoder graphs, so the builder opens the
export as the model will (on the CPU, which every build host has) and fails with the runtime's own
error: a repository that Triton would refuse to load is never written.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vedit import paths
from vedit.atomicio import atomic_dir
from vedit.errors import ExportIntegrityError, ModelDirError, TritonRepoError
from vedit.manifest import read_manifest
from vedit.registry import Registry, load_registry
from vedit.triton_repo import config as cfgmod
from vedit.triton_repo.profiles import Profile, get_profile

DEFAULT_NAME = "vedit"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ExportInfo:
    """What the builder needs from an export directory's manifest."""

    path: Path
    family: str
    precision: str
    registry: Registry
    weights_bytes: int
    #: the manifest's sha256 of each file, which the repository's copy must match
    hashes: dict[str, str]


def read_export(export_dir: str | Path) -> ExportInfo:
    """Check an export directory and read its manifest and registry snapshot."""
    path = Path(export_dir).resolve()
    if not path.is_dir():
        raise ModelDirError(f"{path}: export directory not found; create one with `vedit export flan-t5 --to onnx`")
    manifest = read_manifest(path)
    registry = load_registry(path / "registry.json")
    onnx = [p for p in path.rglob("*") if p.is_file() and ".onnx" in p.name]
    return ExportInfo(
        path=path,
        family=manifest.family,
        precision=manifest.precision,
        registry=registry,
        weights_bytes=sum(p.stat().st_size for p in onnx),
        hashes=dict(manifest.data["sha256"]),
    )


def check_copy(copy: Path, info: ExportInfo) -> None:
    """The repository's copy of the export is the export that was checked: same manifest hashes,
    and every file matches them (hashed again, on the copy)."""
    if read_manifest(copy).data.get("sha256") != info.hashes:
        raise ExportIntegrityError(
            f"{copy}: the copied manifest differs from {info.path / 'manifest.json'}; the export changed "
            "during the build, build the repository again"
        )


def check_drafts(export_dir: Path, *, jump_forward: bool = True) -> None:
    """The export can verify drafts: loaded as the Triton model loads it with ``draft`` on (on the
    CPU, without the prompt-prefix cache: nothing is decoded), so its error is the runtime's own."""
    from vedit.decoding import Predictor
    from vedit.decoding.session import CPU

    if not jump_forward:
        raise TritonRepoError("drafts are verified in jump-forward calls: build with drafts or without "
                              "jump-forward, not both")
    Predictor.load(export_dir, providers=[CPU], threads=1, draft=True, prefix_cache=False)


def default_repo_dir(export_dir: Path, profile: str) -> Path:
    return paths.home() / "triton" / f"{export_dir.name}-{profile}"


def build_repository(
    export_dir: str | Path,
    *,
    profile: str | Profile = "cpu",
    out: str | Path | None = None,
    name: str = DEFAULT_NAME,
    force: bool = False,
    jump_forward: bool = True,
    draft: bool | None = None,
) -> Path:
    """Write a Triton model repository serving ``export_dir``; returns the repository path."""
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    if not _NAME_RE.match(name):
        raise TritonRepoError(f"model name {name!r}: use letters, digits, '_', '.', '-' (at most 64)")
    info = read_export(export_dir)
    if info.precision not in prof.precisions:
        raise TritonRepoError(
            f"profile {prof.name} serves {' or '.join(prof.precisions)} exports, this export is "
            f"{info.precision}; re-export with --precision {prof.precisions[0]} or choose another profile"
        )
    repo = Path(out).resolve() if out is not None else default_repo_dir(info.path, prof.name)
    if repo.exists() and not force:
        raise TritonRepoError(f"{repo} already exists; pass --force to replace it")
    if info.path == repo or repo in info.path.parents:
        raise TritonRepoError(f"{repo}: the repository cannot contain its own export directory")
    if draft:
        check_drafts(info.path, jump_forward=jump_forward)
    model_cfg = cfgmod.build_config(
        name=name,
        profile=prof,
        registry=info.registry,
        instance_count=prof.instance_count(info.weights_bytes),
        family=info.family,
        precision=info.precision,
        jump_forward=jump_forward,
        draft=draft,
    )
    text = cfgmod.config_text(model_cfg)

    with atomic_dir(repo) as tmp:
        model_dir = tmp / name
        version_dir = model_dir / "1"
        version_dir.mkdir(parents=True)
        (model_dir / "config.pbtxt").write_text(text, encoding="utf-8")
        (model_dir / "warmup").mkdir()
        (model_dir / "warmup" / cfgmod.WARMUP_FILE).write_bytes(cfgmod.serialize_strings([cfgmod.WARMUP_INTENT]))
        template = resources.files("vedit.triton_repo").joinpath("triton_model.py").read_text(encoding="utf-8")
        (version_dir / "model.py").write_text(template, encoding="utf-8")
        shutil.copytree(info.path, version_dir / cfgmod.EXPORT_SUBDIR, symlinks=False)
        check_copy(version_dir / cfgmod.EXPORT_SUBDIR, info)
    return repo


__all__ = ["DEFAULT_NAME", "ExportInfo", "build_repository", "check_copy", "check_drafts", "default_repo_dir",
           "read_export"]
