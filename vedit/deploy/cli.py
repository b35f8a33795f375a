"""``vedit triton deploy``: Kubernetes or KServe manifests for a built repository."""

from __future__ import annotations

from pathlib import Path

import click

from vedit.extras import require_extras


@click.command()
@click.argument("repository", type=click.Path(path_type=Path))
@click.option("--target", type=click.Choice(["k8s", "kserve"]), default="k8s", show_default=True,
              help="k8s: Deployment, Service, HPA, PDB, Ingress; kserve: InferenceService (Triton predictor) + PDB.")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), required=True, help="Directory to write.")
@click.option("--image", default=None,
              help="The image built from Dockerfile.triton, by digest: NAME@sha256:DIGEST (required).")
@click.option("--allow-tag", is_flag=True, help="Accept images by tag (the registry then decides what runs).")
@click.option("--replicas", type=int, default=2, show_default=True, help="Pods at rest (the HPA's minimum).")
@click.option("--max-replicas", type=int, default=None, help="The HPA's maximum (default 3 x --replicas).")
@click.option("--profile", default=None, help="Must match the repository's profile (default: the repository's).")
@click.option("--model-uri", default=None,
              help="Fetch the repository archive (tar, tar.gz) at pod start from https://, s3://, gs:// or "
                   "pvc://CLAIM/PATH (required for kserve).")
@click.option("--model-sha256", default=None,
              help="sha256 of that archive; the pod refuses to start on anything else (required with --model-uri).")
@click.option("--fetch-image", default=None,
              help="Image that downloads https/s3/gs archives, by digest (default: KServe's storage initializer "
                   "v0.21.0, which needs a digest or --allow-tag).")
@click.option("--pvc", default=None, help="k8s without --model-uri: claim holding the repository "
                                         "(default NAME-model-repository).")
@click.option("--scale-on", type=click.Choice(["cpu", "queue"]), default="cpu", show_default=True,
              help="HPA signal: CPU utilisation, or Triton's queue time per request (needs a Prometheus adapter).")
@click.option("--name", default="vedit", show_default=True, help="Name of the objects (a DNS label).")
@click.option("--namespace", default="vedit", show_default=True, help="Namespace for the objects (not 'default').")
@click.option("--host", "ingress_host", default=None, help="Ingress host name (k8s; default: any).")
@click.option("--tls-secret", default=None, help="Ingress TLS certificate Secret (default NAME-tls).")
@click.option("--basic-auth-secret", default=None,
              help="Ingress basic authentication from this htpasswd Secret (the API key is the front's).")
@click.option("--cache-mb", type=int, default=64, show_default=True, help="Triton response cache size.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
def deploy(repository: Path, target: str, out: Path, image: str | None, allow_tag: bool, replicas: int,
           max_replicas: int | None, profile: str | None, model_uri: str | None, model_sha256: str | None,
           fetch_image: str | None, pvc: str | None, scale_on: str, name: str, namespace: str,
           ingress_host: str | None, tls_secret: str | None, basic_auth_secret: str | None, cache_mb: int,
           force: bool) -> None:
    """Write Kubernetes (or KServe) manifests serving REPOSITORY, validated offline first."""
    require_extras("deploy")
    from vedit.deploy.manifests import DeployOptions, write_manifests

    opts = DeployOptions(target=target, name=name, image=image, allow_tag=allow_tag, replicas=replicas,
                         max_replicas=max_replicas, profile=profile, model_uri=model_uri,
                         model_sha256=model_sha256.lower() if model_sha256 else None,
                         **({"fetch_image": fetch_image} if fetch_image else {}), pvc=pvc, scale_on=scale_on,
                         cache_mb=cache_mb, host=ingress_host, namespace=namespace, tls_secret=tls_secret,
                         basic_auth_secret=basic_auth_secret)
    written, report, manifests = write_manifests(repository, out, opts, force=force)
    for line in report:
        click.echo(f"valid    {line}")
    for note in manifests.notes:
        click.echo(f"note     {note}")
    click.echo(f"wrote {written}; apply with: kubectl apply -k {written}")


__all__ = ["deploy"]
