"""``vedit triton serve``: run tritonserver, its nginx front and the supervisor until stopped."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import click

from vedit.extras import require_extras


@click.command()
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

    from vedit.serving.server import TritonServer
    from vedit.serving.supervise import SupervisePolicy

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


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


__all__ = ["serve"]
