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
import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from faas.errors import ExecutorUnavailable, FaasError, SandboxError
from faas.executors.docker.engine import DEFAULT_BASE_URL, Engine
from faas.images.common import sha256_file

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TAG", "SOURCE_LABEL", "ensure_docker_image", "main"]

DEFAULT_TAG = "faas-rootfs:latest"
SOURCE_LABEL = "faas.source_sha256"
# An imported tarball has no image config; give it a usable PATH and cwd.
_IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "WORKDIR /",
)
_CHUNK = 1024 * 1024


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
    Blocking (it runs its own event loop): call it from synchronous code.

    Raises ``ExecutorUnavailable`` when the daemon cannot be reached and
    ``SandboxError`` when the import fails.
    """
    path = Path(tar_path)
    if not path.is_file():
        raise SandboxError(f"rootfs tarball {path} does not exist")
    digest = sha256_file(path)
    try:
        engine = Engine(base_url, timeout_s=timeout_s)
    except ValueError as exc:
        raise ExecutorUnavailable(f"cannot reach the Docker daemon at {base_url}: {exc}") from exc
    return asyncio.run(_ensure(engine, path, digest, *_split_tag(tag)))


async def _ensure(engine: Engine, path: Path, digest: str, repo: str, name: str) -> str:
    try:
        image = await engine.inspect_image(f"{repo}:{name}")
        old_id: str | None = None
        if image is not None:
            if ((image.get("Config") or {}).get("Labels") or {}).get(SOURCE_LABEL) == digest:
                return str(image["Id"])
            old_id = str(image["Id"])
        changes = [*_IMAGE_CHANGES, f"LABEL {SOURCE_LABEL}={digest}"]
        await engine.import_image(_chunks(path), repository=repo, tag=name, changes=changes)
        imported = await engine.inspect_image(f"{repo}:{name}")
        if imported is None:
            raise SandboxError(f"importing {path} as {repo}:{name} left no such image")
        new_id = str(imported["Id"])
        if old_id is not None and old_id != new_id:
            # Still used by a container or another tag: the daemon keeps it.
            await engine.remove_image(old_id)
        return new_id
    except ExecutorUnavailable as exc:
        raise ExecutorUnavailable(
            f"{exc} (is dockerd running? scripts/ensure-dockerd.sh starts one)"
        ) from exc
    except (KeyError, TypeError, OSError) as exc:
        raise SandboxError(f"Docker API error while ensuring image {repo}:{name}: {exc!r}") from exc
    finally:
        await engine.aclose()


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    """The tarball in 1 MiB pieces (read in a thread; it can be hundreds of MB)."""
    with path.open("rb") as tar:
        while chunk := await asyncio.to_thread(tar.read, _CHUNK):
            yield chunk


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
