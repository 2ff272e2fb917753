"""A local Docker image made from a rootfs tarball: no registry is ever contacted.

``ensure_docker_image(tar_path, tag)`` imports the tarball with the Engine
API's image import (what ``docker import`` does) and labels the image with the
tarball's sha256, so a second call with the same tarball is a cheap no-op and
a changed tarball moves the tag to a fresh import. The default tarball is the
guest root filesystem from ``faas.images.rootfs.ensure_rootfs_tar``.

``main(argv)`` is the command-line entry (meant for ``faas image docker-import``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

import docker.errors  # binds `docker` too; keeps isort from mistaking tests/docker
import requests

from faas.errors import ExecutorUnavailable, FaasError, SandboxError
from faas.images.common import sha256_file

DEFAULT_TAG = "faas-rootfs:latest"
DEFAULT_BASE_URL = "unix:///var/run/docker.sock"
SOURCE_LABEL = "faas.source_sha256"
# An imported tarball has no image config; give it a usable PATH and cwd.
_IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "WORKDIR /",
)


def _client(base_url: str, timeout_s: float) -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=base_url, version="auto", timeout=int(timeout_s))
    except docker.errors.DockerException as exc:
        raise ExecutorUnavailable(
            f"cannot reach the Docker daemon at {base_url}: {exc} "
            "(is dockerd running? scripts/ensure-dockerd.sh starts one)"
        ) from exc
    return client


def _split_tag(tag: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a ``:`` inside a registry host:port is not a tag."""
    repo, sep, name = tag.rpartition(":")
    if not sep or "/" in name:
        return tag, "latest"
    return repo, name


def ensure_docker_image(
    tar_path: Path | str,
    tag: str = DEFAULT_TAG,
    *,
    base_url: str = DEFAULT_BASE_URL,
    timeout_s: float = 600.0,
) -> str:
    """Import ``tar_path`` as image ``tag`` unless it already holds that tarball; return its id.

    Idempotent: the image carries ``faas.source_sha256``; when ``tag`` exists
    with the same hash nothing is imported. When the tag held another
    tarball, the tag moves and the old image is removed if nothing uses it.

    Raises ``ExecutorUnavailable`` when the daemon cannot be reached and
    ``SandboxError`` when the import fails.
    """
    path = Path(tar_path)
    if not path.is_file():
        raise SandboxError(f"rootfs tarball {path} does not exist")
    digest = sha256_file(path)
    repo, name = _split_tag(tag)
    client = _client(base_url, timeout_s)
    try:
        old_id: str | None = None
        try:
            image = client.images.get(f"{repo}:{name}")
        except docker.errors.ImageNotFound:
            image = None
        if image is not None:
            if (image.labels or {}).get(SOURCE_LABEL) == digest:
                return str(image.id)
            old_id = str(image.id)
        changes = [*_IMAGE_CHANGES, f"LABEL {SOURCE_LABEL}={digest}"]
        try:
            client.api.import_image_from_file(
                str(path), repository=repo, tag=name, changes=changes
            )
            new_id = str(client.images.get(f"{repo}:{name}").id)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise SandboxError(f"importing {path} as {repo}:{name} failed: {exc}") from exc
        if old_id is not None and old_id != new_id:
            # Still used by a container or another tag: leave it.
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(old_id, noprune=False)
        return new_id
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise SandboxError(f"Docker API error while ensuring image {tag}: {exc}") from exc
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``faas image docker-import [--tar PATH] [--tag TAG] [--base-url URL]``: exit status.

    Without ``--tar`` the guest root filesystem is built (or taken from the
    cache) with ``faas.images.rootfs.ensure_rootfs_tar``.
    """
    parser = argparse.ArgumentParser(
        prog="faas image docker-import",
        description="Import a rootfs tarball as a local Docker image (no registry needed).",
    )
    parser.add_argument("--tar", type=Path, help="rootfs tarball (default: the guest rootfs)")
    parser.add_argument("--tag", default=DEFAULT_TAG, help=f"image tag (default {DEFAULT_TAG})")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="Docker Engine socket URL")
    parser.add_argument("--cache-dir", type=Path, help="image cache folder for the rootfs build")
    args = parser.parse_args(argv)
    try:
        tar_path = args.tar
        if tar_path is None:
            from faas.config import Settings
            from faas.images.rootfs import ensure_rootfs_tar

            images = Settings.from_env().images
            tar_path = ensure_rootfs_tar(args.cache_dir or images.cache_dir,
                                         mirror=images.debian_mirror)
        image_id = ensure_docker_image(tar_path, args.tag, base_url=args.base_url)
    except FaasError as exc:
        print(f"docker-import: {exc}", file=sys.stderr)
        return 1
    print(f"{args.tag} {image_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
