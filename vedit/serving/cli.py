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
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="PEM certificate (chain) for the front: clients use https:// and grpcs://.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="PEM private key of --tls-cert.")
@click.option("--tls-client-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Require client certificates signed by these CAs (PEM): mutual TLS, with --tls-cert.")
@click.option("--api-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="File with the API key(s) clients must send (Authorization: Bearer KEY), one per line; "
                   "health checks need none.")
@click.option("--server-name", "server_names", multiple=True,
              help="Host name clients use to reach the server (repeatable); requests for other hosts are "
                   "dropped. localhost, 127.0.0.1 and the bound address are always accepted.")
@click.option("--allow-origin", "allowed_origins", multiple=True,
              help="Web page origin (https://host[:port]) allowed to call the server from a browser "
                   "(repeatable); requests with any other Origin get 403.")
@click.option("--user", default=None,
              help="Started as root: the user tritonserver and the model code run as (default: vedit-triton, "
                   "created if missing; `root` keeps root).")
@click.option("--insecure", is_flag=True,
              help="Allow a --host beyond loopback without TLS and an API key (a trusted network only).")
def serve(repository: Path, http_port: int, grpc_port: int, metrics_port: int, host: str, cache_mb: int,
          ready_timeout: float, log_path: Path | None, no_front: bool, no_supervise: bool,
          probe_interval: float, tls_cert: Path | None, tls_key: Path | None, tls_client_ca: Path | None,
          api_key_file: Path | None,
          server_names: tuple[str, ...], allowed_origins: tuple[str, ...], user: str | None, insecure: bool) -> None:
    """Run tritonserver on REPOSITORY until Ctrl-C or SIGTERM.

    By default nginx fronts the HTTP and gRPC ports: it passes health, the models' ready, metadata,
    config and infer (403 for the rest: Triton's repository, shared-memory, logging, trace and
    statistics APIs are also locked with a key only the supervisor holds), refuses bodies over the
    size any valid request needs (413), other Host names and foreign web origins, and, with
    --api-key-file, requests without the key (401). A supervisor restarts tritonserver if it dies
    and reloads a model whose instances died; both are logged here.
    """
    require_extras("triton")
    import logging

    from vedit.serving.front import FrontTLS, check_exposure, read_api_keys
    from vedit.serving.server import TritonServer
    from vedit.serving.supervise import SupervisePolicy

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca and not tls_cert:
        raise click.UsageError("--tls-client-ca needs --tls-cert/--tls-key")
    if no_front and (tls_cert or api_key_file or server_names or allowed_origins):
        raise click.UsageError("--tls-cert, --api-key-file, --server-name and --allow-origin are the front's; "
                               "drop --no-front")
    check_exposure(host, tls=tls_cert is not None and not no_front, api_key=api_key_file is not None,
                   insecure=insecure)
    api_keys = read_api_keys(api_key_file) if api_key_file else ()
    tls = (FrontTLS(tls_cert.resolve(), tls_key.resolve(), tls_client_ca.resolve() if tls_client_ca else None)
           if tls_cert and tls_key else None)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = TritonServer(repository, http_port=http_port or None, grpc_port=grpc_port or None,
                          metrics_port=metrics_port or None, host=host, cache_bytes=cache_mb * 1024 * 1024,
                          log_path=log_path, front=not no_front, supervise=not no_supervise,
                          policy=SupervisePolicy(probe_interval=probe_interval, ready_timeout=ready_timeout),
                          api_keys=api_keys, tls=tls, server_names=server_names, allowed_origins=allowed_origins,
                          user=user)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        click.echo(f"starting tritonserver on {repository} ...", err=True)
        server.start()
        server.wait_ready(ready_timeout)
        for kind, url in server.urls.items():
            click.echo(f"{kind:8} {url}")
        click.echo(f"log      {server.log_path}", err=True)
        if server.front is not None:
            click.echo(f"front    nginx: allow-list, bodies over {server.body_limit} bytes get 413, "
                       f"{'API key required' if api_keys else 'no API key'}, {'TLS' if tls else 'no TLS'} "
                       f"({server.front.directory})", err=True)
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
