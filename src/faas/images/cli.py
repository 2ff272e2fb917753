"""``faas image build``: build the guest kernel, initramfs and root disk; print the manifest."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from faas.config import Settings
from faas.errors import ValidationError
from faas.images.build import build_images
from faas.images.common import ImageBuildError


def main(argv: list[str] | None = None) -> int:
    """``faas image [build] [--cache-dir DIR] [--force]`` (``build`` is the default action);
    ``faas image docker-import ...`` is handed to ``faas.images.docker_image``."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["docker-import"]:
        from faas.images.docker_image import main as docker_import

        return docker_import(args_in[1:])
    if args_in[:1] == ["build"]:
        args_in = args_in[1:]
    try:
        images = Settings.from_env().images
    except ValidationError as exc:
        print(f"faas image build: {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="faas image build", description=__doc__)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"where images are cached (FAAS_IMAGE_CACHE, now {images.cache_dir})")
    parser.add_argument("--force", action="store_true",
                        help="rebuild everything and fetch the current kernel package")
    args = parser.parse_args(args_in)
    try:
        manifest = build_images(args.cache_dir or images.cache_dir, force=args.force,
                                mirror=images.debian_mirror)
    except ImageBuildError as exc:
        print(f"faas image build: {exc}", file=sys.stderr)
        return 1
    json.dump(manifest.to_json(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
