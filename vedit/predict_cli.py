"""``vedit predict``: run an exported student in-process (no server) on intents, or ask a Triton
server with ``--url`` (same output: the client returns the runtime's own predictions).

Intents come as arguments (answered together), or one per line on stdin, each answered as soon as
its line arrives, so ``vedit predict`` can sit at the end of a pipe. An intent that cannot be
answered (the intent rule of :mod:`vedit.intents`: an empty or blank line, too many bytes) gets its
own ``error: intent N: ...`` (arguments) or ``error: line N: ...`` (stdin) on stderr, the others are
still answered, and the exit code is 1. ``--draft`` (in-process) verifies drafts of each row's next
free tokens in the same decoder call: the same answers, fewer calls (``--stats`` shows them).
``--json`` prints one JSON object per intent:
``{"intent": ..., "adjust": {...}, "selective_adjust": {...}, "filter": {...}}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vedit import paths
from vedit.clibase import HELP_OPTIONS
from vedit.errors import ClientError, ModelDirError, ServerUnavailableError
from vedit.extras import require_extras
from vedit.intents import intent_problem

DEFAULT_EXPORT = "flan-t5-fp32"


def default_model_dir() -> Path:
    return paths.exports_dir() / DEFAULT_EXPORT


@click.command("predict", context_settings={"help_option_names": HELP_OPTIONS})
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help=f"Export directory (default: $VEDIT_HOME/exports/{DEFAULT_EXPORT}).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="onnxruntime intra-op threads.")
@click.option("--no-jump-forward", is_flag=True, help="Ask the model for every token (reference path).")
@click.option("--draft/--no-draft", default=None,
              help="Verify drafts of the next free tokens in each decoder call: the same answers in fewer "
                   "calls (see --stats). Default: on where the export can (exports of this vedit) and "
                   "jump-forward is on.")
@click.option("--stats", is_flag=True, help="Add decoder calls and free/forced token counts.")
@click.option("--url", default=None,
              help="Ask a Triton server instead: http://HOST:8000 or grpc://HOST:8001; several replicas "
                   "comma-separated (round-robin, failover): grpc://A:8001,grpc://B:8001.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="VEDIT_API_TOKEN_FILE",
              help="With --url: file holding the server's API key (default: $VEDIT_API_TOKEN, if set).")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="With an https:// or grpcs:// --url: PEM certificates to trust (default: the system's).")
@click.option("--client-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="With --url: PEM client certificate for mutual TLS.")
@click.option("--client-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="With --url: PEM private key of --client-cert.")
@click.argument("intents", nargs=-1)
def predict(model_dir: Path | None, as_json: bool, threads: int | None, no_jump_forward: bool, draft: bool | None,
            stats: bool, url: str | None, token_file: Path | None, ca_bundle: Path | None, client_cert: Path | None,
            client_key: Path | None, intents: tuple[str, ...]) -> None:
    """Predict tool calls for INTENTS (or stdin lines) with an exported student or a server."""
    from vedit.client import connect

    if url is not None and (model_dir is not None or threads or no_jump_forward or draft is not None or stats):
        raise click.UsageError("--url asks a server: --model, --threads, --no-jump-forward, --draft/--no-draft and --stats "
                               "do not apply")
    if draft and no_jump_forward:
        raise click.UsageError("--draft verifies drafts in jump-forward calls: drop --no-jump-forward")
    if url is None and (token_file or ca_bundle or client_cert or client_key):
        raise click.UsageError("--token-file, --ca-bundle, --client-cert and --client-key go with --url")
    if (client_cert is None) != (client_key is None):
        raise click.UsageError("--client-cert and --client-key go together")
    if url is None and model_dir is None:
        model_dir = default_model_dir()
        if not model_dir.is_dir():
            raise ModelDirError(
                f"no model at {model_dir}; export the demo student first (vedit export flan-t5 --to onnx) "
                "or pass --model EXPORT_DIR"
            )
    if not intents and sys.stdin.isatty():
        raise click.UsageError("give intents as arguments or one per line on stdin")
    if url is not None:
        require_extras("triton")
        from vedit.client import TLS

        token = token_file.read_text(encoding="utf-8").strip() if token_file else None
        tls = TLS(ca_certs=str(ca_bundle) if ca_bundle else None, certfile=str(client_cert) if client_cert else None,
                  keyfile=str(client_key) if client_key else None)
        client = connect([u.strip() for u in url.split(",")], token=token, tls=tls)
    else:
        client = connect(model_dir, threads=threads, jump_forward=not no_jump_forward, draft=draft)
    with client:
        bad = _answer_arguments(client, list(intents), as_json=as_json, stats=stats) if intents else 0
        for number, line in enumerate(() if intents else sys.stdin, start=1):
            bad += not _answer_one(client, line.rstrip("\r\n"), f"line {number}", as_json=as_json, stats=stats)
            sys.stdout.flush()
        if bad:
            raise click.exceptions.Exit(1)


def _answer_arguments(client, intents: list[str], *, as_json: bool, stats: bool) -> int:
    """Answer the intents together; those the intent rule refuses get their own error line first.
    Returns how many could not be answered."""
    problems = {i: intent_problem(x) for i, x in enumerate(intents, start=1)}
    good = [x for i, x in enumerate(intents, start=1) if problems[i] is None]
    try:
        answers = iter(client.predict(good) if good else [])
    except ClientError as exc:  # a limit the server sets lower: ask one by one, each error on its line
        if isinstance(exc, ServerUnavailableError):
            raise
        return sum(not _answer_one(client, x, f"intent {i}", as_json=as_json, stats=stats)
                   for i, x in enumerate(intents, start=1))
    for i in problems:
        if problems[i] is not None:
            click.echo(f"error: intent {i}: {problems[i]}", err=True)
        else:
            _emit(next(answers), as_json=as_json, stats=stats)
    return sum(p is not None for p in problems.values())


def _answer_one(client, intent: str, where: str, *, as_json: bool, stats: bool) -> bool:
    problem = intent_problem(intent)
    if problem is None:
        try:
            (p,) = client.predict([intent])
        except ClientError as exc:
            if isinstance(exc, ServerUnavailableError):
                raise
            problem = str(exc)
    if problem is not None:
        click.echo(f"error: {where}: {problem}", err=True)
        return False
    _emit(p, as_json=as_json, stats=stats)
    return True


def _emit(p, *, as_json: bool, stats: bool) -> None:
    if as_json:
        obj = p.to_json()
        if stats:
            obj["stats"] = p.stats.as_dict()
        click.echo(json.dumps(obj, ensure_ascii=False))
        return
    click.echo(p.intent if p.intent else '""')
    width = max(len(n) for n in p.calls)
    for name, call in p.calls.items():
        click.echo(f"  {name:<{width}}  {call.dumps()}{'' if call.used else '  (not used)'}")
    if stats:
        s = p.stats
        click.echo(f"  decoder calls {s.decoder_calls}, free tokens {s.free_tokens}, forced {s.forced_tokens}"
                   + (", intent truncated" if s.truncated else ""))


__all__ = ["predict", "default_model_dir"]
