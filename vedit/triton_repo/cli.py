"""``vedit triton build`` and ``vedit triton serve``: thin wrappers over the library."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import click

from vedit.clibase import VeditGroup
from vedit.extras import require_extras
from vedit.triton_repo.builder import DEFAULT_NAME, build_repository
from vedit.triton_repo.profiles import PROFILES


@click.group(cls=VeditGroup)
def triton() -> None:
    """Serve an export with NVIDIA Triton Inference Server."""


def _profiles_help() -> str:
    return "Serving profile: " + "; ".join(f"{p.name} ({p.kind}, {'/'.join(p.precisions)})" for p in PROFILES.values())


@triton.command()
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--profile", default="cpu", show_default=True, help=_profiles_help())
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), default=None,
              help="Repository to write (default: $VEDIT_HOME/triton/<export>-<profile>).")
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="Model name inside the repository.")
@click.option("--force", is_flag=True, help="Replace an existing repository.")
@click.option("--no-jump-forward", is_flag=True, help="Decode step by step (for comparisons).")
def build(export_dir: Path, profile: str, out: Path | None, name: str, force: bool, no_jump_forward: bool) -> None:
    """Write a Triton model repository serving EXPORT_DIR."""
    require_extras("triton")
    repo = build_repository(export_dir, profile=profile, out=out, name=name, force=force,
                            jump_forward=not no_jump_forward)
    click.echo(f"wrote {repo} (model {name}, profile {profile})")
    click.echo(f"serve it with: vedit triton serve {repo}")


@triton.command()
@click.argument("repository", type=click.Path(path_type=Path))
@click.option("--http-port", type=int, default=8000, show_default=True, help="0 picks a free port.")
@click.option("--grpc-port", type=int, default=8001, show_default=True, help="0 picks a free port.")
@click.option("--metrics-port", type=int, default=8002, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; 0.0.0.0 accepts connections from other hosts.")
@click.option("--cache-mb", type=int, default=64, show_default=True, help="Response cache size.")
@click.option("--ready-timeout", type=float, default=300.0, show_default=True,
              help="Seconds to wait for the models to load.")
@click.option("--log", "log_path", type=click.Path(path_type=Path), default=None, help="Server log file.")
@click.option("--no-front", is_flag=True,
              help="Expose Triton's HTTP port directly, without the nginx front (no request size limit: "
                   "Triton 2.51 crashes on bodies of a few MB).")
@click.option("--no-supervise", is_flag=True, help="Do not restart tritonserver or reload dead model instances.")
@click.option("--probe-interval", type=float, default=10.0, show_default=True,
              help="Seconds between probe requests to each model (0: only watch the processes).")
def serve(repository: Path, http_port: int, grpc_port: int, metrics_port: int, host: str, cache_mb: int,
          ready_timeout: float, log_path: Path | None, no_front: bool, no_supervise: bool,
          probe_interval: float) -> None:
    """Run tritonserver on REPOSITORY until Ctrl-C or SIGTERM.

    By default nginx fronts the HTTP port (a body over the size any valid request needs gets 413)
    and a supervisor restarts tritonserver if it dies and reloads a model whose instances died;
    both are logged here.
    """
    require_extras("triton")
    import logging

    from vedit.triton_repo.server import TritonServer
    from vedit.triton_repo.supervise import SupervisePolicy

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = TritonServer(repository, http_port=http_port or None, grpc_port=grpc_port or None,
                          metrics_port=metrics_port or None, host=host, cache_bytes=cache_mb * 1024 * 1024,
                          log_path=log_path, front=not no_front, supervise=not no_supervise,
                          policy=SupervisePolicy(probe_interval=probe_interval, ready_timeout=ready_timeout))
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        click.echo(f"starting tritonserver on {repository} ...", err=True)
        server.start()
        server.wait_ready(ready_timeout)
        for kind, url in server.urls.items():
            click.echo(f"{kind:8} {url}")
        click.echo(f"log      {server.log_path}", err=True)
        if server.front is not None:
            click.echo(f"front    nginx: bodies over {server.body_limit} bytes get 413 ({server.front.directory})",
                       err=True)
        click.echo("ready; Ctrl-C to stop", err=True)
        while server.running:
            time.sleep(0.5)
        click.echo(f"error: tritonserver exited and was not brought back:\n{server.failure_report()}", err=True)
        raise SystemExit(1)
    except KeyboardInterrupt:
        click.echo("stopping ...", err=True)
    finally:
        code = server.stop()
        signal.signal(signal.SIGTERM, previous)
    click.echo(f"stopped (exit code {code})", err=True)


@triton.command()
@click.argument("repository", type=click.Path(path_type=Path))
@click.option("--target", type=click.Choice(["k8s", "kserve"]), default="k8s", show_default=True,
              help="k8s: Deployment, Service, HPA, PDB, Ingress; kserve: InferenceService (Triton predictor) + PDB.")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), required=True, help="Directory to write.")
@click.option("--image", default="vedit-triton:latest", show_default=True,
              help="The image built from Dockerfile.triton, pushed where the cluster can pull it.")
@click.option("--replicas", type=int, default=2, show_default=True, help="Pods at rest (the HPA's minimum).")
@click.option("--max-replicas", type=int, default=None, help="The HPA's maximum (default 3 x --replicas).")
@click.option("--profile", default=None, help="Must match the repository's profile (default: the repository's).")
@click.option("--model-uri", default=None,
              help="Fetch the repository at pod start from s3://, gs://, https://, pvc://... (required for kserve).")
@click.option("--pvc", default=None, help="k8s without --model-uri: claim holding the repository "
                                         "(default NAME-model-repository).")
@click.option("--scale-on", type=click.Choice(["cpu", "queue"]), default="cpu", show_default=True,
              help="HPA signal: CPU utilisation, or Triton's queue time per request (needs a Prometheus adapter).")
@click.option("--name", default="vedit", show_default=True, help="Name of the objects (a DNS label).")
@click.option("--namespace", default=None, help="Namespace for the objects (default: kubectl's).")
@click.option("--host", "ingress_host", default=None, help="Ingress host name (k8s; default: any).")
@click.option("--cache-mb", type=int, default=64, show_default=True, help="Triton response cache size.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
def deploy(repository: Path, target: str, out: Path, image: str, replicas: int, max_replicas: int | None,
           profile: str | None, model_uri: str | None, pvc: str | None, scale_on: str, name: str,
           namespace: str | None, ingress_host: str | None, cache_mb: int, force: bool) -> None:
    """Write Kubernetes (or KServe) manifests serving REPOSITORY, validated offline first."""
    require_extras("deploy")
    from vedit.triton_repo.deploy import DeployOptions, write_manifests

    opts = DeployOptions(target=target, name=name, image=image, replicas=replicas, max_replicas=max_replicas,
                         profile=profile, model_uri=model_uri, pvc=pvc, scale_on=scale_on, cache_mb=cache_mb,
                         host=ingress_host, namespace=namespace)
    written, report, manifests = write_manifests(repository, out, opts, force=force)
    for line in report:
        click.echo(f"valid    {line}")
    for note in manifests.notes:
        click.echo(f"note     {note}")
    click.echo(f"wrote {written}; apply with: kubectl apply -k {written}")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


__all__ = ["triton"]
