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
    from vedit.deploy.manifests import DeployOptions, write_manifests

    opts = DeployOptions(target=target, name=name, image=image, replicas=replicas, max_replicas=max_replicas,
                         profile=profile, model_uri=model_uri, pvc=pvc, scale_on=scale_on, cache_mb=cache_mb,
                         host=ingress_host, namespace=namespace)
    written, report, manifests = write_manifests(repository, out, opts, force=force)
    for line in report:
        click.echo(f"valid    {line}")
    for note in manifests.notes:
        click.echo(f"note     {note}")
    click.echo(f"wrote {written}; apply with: kubectl apply -k {written}")


__all__ = ["deploy"]
