"""The Docker tier's tooling: leftover sweep, image import CLI, ensure-dockerd.sh."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from docker_support import make_spec
from engine_http import Daemon, NotFound

from faas.executors.docker import MANAGED_LABEL, DockerExecutor
from faas.images.docker_image import SOURCE_LABEL, ensure_docker_image, main

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]


async def test_sweep_everything_removes_leftovers_of_a_crashed_server(
    docker_image: str, docker_daemon: Daemon
) -> None:
    leftover = docker_daemon.create(
        docker_image, ["sleep", "60"], labels={MANAGED_LABEL: "1", "faas.owner": "crashed"},
        NetworkMode="none",
    )
    docker_daemon.start(leftover)
    ex = DockerExecutor(default_image=docker_image)
    try:
        assert await ex.sweep() == 0  # only its own by default
        assert await ex.sweep(everything=True) >= 1
    finally:
        await ex.aclose()
    with pytest.raises(NotFound):
        docker_daemon.inspect(leftover)


def test_docker_import_cli(
    tmp_path: Path, docker_daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hello").write_text("hi\n")
    tar_path = tmp_path / "tiny.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(tree, arcname=".")
    tag = "faas-test-tiny:latest"
    try:
        assert main(["--tar", str(tar_path), "--tag", tag]) == 0
        image_id = capsys.readouterr().out.split()[-1]
        image = docker_daemon.image(tag)
        assert image["Id"] == image_id
        assert image["Config"]["Labels"][SOURCE_LABEL]
        # Same tarball: no new import. Changed tarball: the tag moves.
        assert ensure_docker_image(tar_path, tag) == image_id
        with tarfile.open(tar_path, "a") as tar:
            tar.add(tree / "etc" / "hello", arcname="./etc/hello2")
        assert ensure_docker_image(tar_path, tag) != image_id
        assert main(["--tar", str(tmp_path / "missing.tar"), "--tag", tag]) == 1
        assert "does not exist" in capsys.readouterr().err
    finally:
        docker_daemon.remove_image(tag)


def test_ensure_dockerd_is_idempotent(docker_daemon: Daemon) -> None:
    script = REPO / "scripts" / "ensure-dockerd.sh"
    proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "already answers" in proc.stderr


def test_ensure_dockerd_says_why_it_cannot_start(tmp_path: Path) -> None:
    script = REPO / "scripts" / "ensure-dockerd.sh"
    env = {**os.environ, "PATH": "/usr/bin:/bin", "DOCKER_SOCK": str(tmp_path / "none.sock"),
           "FAAS_DOCKERD_DIR": str(tmp_path / "state")}
    if Path("/usr/bin/dockerd").exists() or Path("/bin/dockerd").exists():
        pytest.skip("dockerd is on the reduced PATH; cannot simulate a host without it")
    proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=60, env=env,
                          check=False)
    assert proc.returncode != 0
    assert "dockerd is not installed" in proc.stderr


async def test_image_volumes_and_entrypoint_do_not_leak_or_interfere(
    docker_image: str, docker_daemon: Daemon
) -> None:
    """An image declaring a VOLUME and an ENTRYPOINT: the command runs as given, no volume stays."""
    base = docker_daemon.create(docker_image, ["true"], NetworkMode="none")
    tag = "faas-test-volume:latest"
    try:
        docker_daemon.commit(base, repository="faas-test-volume", tag="latest",
                             changes=['VOLUME /data', 'ENTRYPOINT ["/bin/false"]'])
    finally:
        docker_daemon.remove(base)
    volumes_before = docker_daemon.volumes()
    ex = DockerExecutor(default_image=tag)
    try:
        result = await ex.run(make_spec(["sh", "-c", "test -d /data && echo has-volume"]))
    finally:
        await ex.aclose()
        docker_daemon.remove_image(tag)
    assert result.exit_code == 0, result
    assert result.stdout == b"has-volume\n"  # sh ran, not the image's /bin/false
    assert docker_daemon.volumes() <= volumes_before
