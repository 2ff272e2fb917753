"""Firecracker: configuration, jailer layout and the hybrid vsock handshake (unit, fake peer);
the request path where its canary fails (fast, explained); a real boot where it passes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from microvm_support import make_spec

from faas.errors import AgentProtocolError, ExecutorUnavailable
from faas.executors.microvm import FirecrackerExecutor, MicroVMSettings, firecracker_availability
from faas.executors.microvm.channel import HybridVsockChannel, hybrid_vsock_connect
from faas.executors.microvm.config import VMConfig
from faas.executors.microvm.fcbinary import FirecrackerBinaries
from faas.executors.microvm.firecracker import (
    GUEST_CID,
    FirecrackerDriver,
    firecracker_config,
)
from faas.images.manifest import GuestImages

# The unit tests need nothing; the two that boot (or refuse to) carry the marker.


@pytest.fixture
def fake_images(tmp_path: Path) -> GuestImages:
    files = {}
    for name in ("vmlinux", "rootfs.ext4", "initrd.cpio"):
        files[name] = tmp_path / "images" / name
        files[name].parent.mkdir(exist_ok=True)
        files[name].write_bytes(name.encode())
    return GuestImages(files["vmlinux"], files["rootfs.ext4"], files["initrd.cpio"])


def test_config_document(fake_images: GuestImages) -> None:
    config = VMConfig(images=fake_images, vcpus=2, memory_mib=384, vsock=True)
    doc = firecracker_config(config, kernel="k", rootfs="r", scratch="s", initrd="i",
                             uds_path="v.sock")
    assert doc["boot-source"]["kernel_image_path"] == "k"
    assert doc["boot-source"]["initrd_path"] == "i"
    args = doc["boot-source"]["boot_args"].split()
    assert "faas.channel=vsock" in args and "reboot=k" in args and "panic=-1" in args
    root, scratch = doc["drives"]
    assert (root["path_on_host"], root["is_read_only"], root["is_root_device"]) == \
        ("r", True, False)
    assert (scratch["path_on_host"], scratch["is_read_only"]) == ("s", False)
    assert doc["machine-config"] == {"vcpu_count": 2, "mem_size_mib": 384, "smt": False}
    assert doc["vsock"] == {"guest_cid": GUEST_CID, "uds_path": "v.sock"}
    assert "entropy" in doc and "network-interfaces" not in doc


def test_plain_command_writes_the_config_file(fake_images: GuestImages, tmp_path: Path) -> None:
    binaries = FirecrackerBinaries(Path("/opt/fc/firecracker"), None, "test")
    driver = FirecrackerDriver(binaries, use_jailer=False)
    workdir = tmp_path / "faas-vm-test"
    workdir.mkdir()
    argv = driver.command(VMConfig(images=fake_images, vsock=True), workdir)
    assert argv == ["/opt/fc/firecracker", "--no-api", "--config-file",
                    str(workdir / "config.json"), "--level", "Warning"]
    doc = json.loads((workdir / "config.json").read_text())
    assert doc["drives"][1]["path_on_host"] == str(workdir / "scratch.ext4")
    assert doc["vsock"]["uds_path"] == str(workdir / "v.sock")
    channel = driver.channel(VMConfig(images=fake_images, vsock=True), workdir)
    assert isinstance(channel, HybridVsockChannel) and channel.uds_path == workdir / "v.sock"


@pytest.mark.skipif(os.geteuid() != 0, reason="the jailer layout chowns the scratch disk")
def test_jailed_command_lays_out_the_chroot(fake_images: GuestImages, tmp_path: Path) -> None:
    binaries = FirecrackerBinaries(Path("/opt/fc/firecracker"), Path("/opt/fc/jailer"), "test")
    driver = FirecrackerDriver(binaries, use_jailer=True)
    workdir = tmp_path / "faas-vm-jail"
    workdir.mkdir()
    (workdir / "scratch.ext4").write_bytes(b"scratch")
    argv = driver.command(VMConfig(images=fake_images, vsock=True), workdir, 300007)
    assert argv[:3] == ["/opt/fc/jailer", "--id", "faas-vm-jail"]
    assert argv[argv.index("--exec-file") + 1] == "/opt/fc/firecracker"
    assert argv[argv.index("--uid") + 1] == argv[argv.index("--gid") + 1] == "300007"
    assert argv[argv.index("--chroot-base-dir") + 1] == str(workdir / "jail")
    assert argv[argv.index("--") + 1:] == ["--no-api", "--config-file", "config.json",
                                            "--level", "Warning"]
    root = workdir / "jail" / "firecracker" / "faas-vm-jail" / "root"
    doc = json.loads((root / "config.json").read_text())
    assert doc["boot-source"]["kernel_image_path"] == "vmlinux"
    assert doc["vsock"]["uds_path"] == "v.sock"
    for name in ("vmlinux", "rootfs.ext4", "initrd.cpio"):
        assert (root / name).read_bytes() == name.encode()
    assert (root / "vmlinux").stat().st_ino == fake_images.kernel.stat().st_ino  # hard link
    assert (root / "scratch.ext4").stat().st_uid == 300007
    channel = driver.channel(VMConfig(images=fake_images), workdir)
    assert isinstance(channel, HybridVsockChannel) and channel.uds_path == root / "v.sock"


def test_the_jail_id_is_one_the_jailer_accepts(fake_images: GuestImages, tmp_path: Path) -> None:
    """``mkdtemp`` names may hold ``_``, which the jailer refuses ("Invalid instance ID")."""
    driver = FirecrackerDriver(FirecrackerBinaries(Path("/fc"), Path("/jailer"), "t"),
                               use_jailer=True)
    workdir = tmp_path / "faas-vm-1a2b3c-x_y_z"
    workdir.mkdir()
    (workdir / "scratch.ext4").write_bytes(b"scratch")
    argv = driver.command(VMConfig(images=fake_images, vsock=True), workdir, 300007)
    jail = argv[argv.index("--id") + 1]
    assert re.fullmatch(r"[A-Za-z0-9-]{1,64}", jail), jail
    assert (workdir / "jail" / "firecracker" / jail / "root" / "config.json").is_file()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def fake_vsock(tmp_path: Path) -> AsyncIterator[Callable[[Handler], Awaitable[Path]]]:
    """Start a fake Firecracker vsock unix socket with a given handler."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> Path:
        path = tmp_path / f"v{len(servers)}.sock"
        servers.append(await asyncio.start_unix_server(handler, str(path)))
        return path

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _firecracker_like(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept ``CONNECT 1024``, answer ``OK <host port>``, then echo (the 'guest')."""
    line = await reader.readline()
    if line != b"CONNECT 1024\n":
        writer.close()
        return
    writer.write(b"OK 1073741824\n")
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_handshake_then_the_stream_reaches_the_guest(fake_vsock) -> None:  # type: ignore[no-untyped-def]
    path = await fake_vsock(_firecracker_like)
    reader, writer = await hybrid_vsock_connect(path, 1024)
    writer.write(b"FAAS hello")
    await writer.drain()
    assert await reader.readexactly(10) == b"FAAS hello"
    writer.close()


async def test_handshake_refused_when_nobody_listens_on_the_port(fake_vsock) -> None:  # type: ignore[no-untyped-def]
    path = await fake_vsock(_firecracker_like)
    with pytest.raises(AgentProtocolError, match="refused"):
        await hybrid_vsock_connect(path, 9999)


async def test_handshake_rejects_garbage(fake_vsock) -> None:  # type: ignore[no-untyped-def]
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"HELLO THERE\n")
        await writer.drain()
        writer.close()

    path = await fake_vsock(garbage)
    with pytest.raises(AgentProtocolError, match="refused"):
        await hybrid_vsock_connect(path, 1024)


async def test_channel_retries_until_the_agent_listens(tmp_path: Path) -> None:
    """Firecracker closes a CONNECT to a port nobody listens on; the channel retries."""
    path = tmp_path / "v.sock"
    attempts = 0

    async def late_agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            await reader.readline()
            writer.close()  # the guest agent is not listening yet
            return
        await _firecracker_like(reader, writer)

    channel = HybridVsockChannel(path, 1024)
    opening = asyncio.ensure_future(channel.open())
    await asyncio.sleep(0.1)  # the socket does not even exist yet
    server = await asyncio.start_unix_server(late_agent, str(path))
    try:
        reader, writer = await asyncio.wait_for(opening, 5)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        assert attempts == 3
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


async def _availability_or_skip() -> str:
    verdict = await firecracker_availability()
    return verdict.reason if not verdict.usable else ""


@pytest.mark.firecracker
async def test_request_where_the_canary_fails_is_a_fast_clear_error(
    images: GuestImages, settings: MicroVMSettings
) -> None:
    reason = await _availability_or_skip()  # runs (and caches) the canary once
    if not reason:
        pytest.skip("Firecracker works on this host; the refusal path does not apply")
    print(f"\nfirecracker unavailable here: {reason}")
    executor = FirecrackerExecutor(settings, images)
    started = time.monotonic()
    with pytest.raises(ExecutorUnavailable, match=r"canary|cannot boot|not found") as info:
        await executor.run(make_spec(["true"]))
    assert time.monotonic() - started < 2.0
    assert info.value.status == 503
    await executor.aclose()


@pytest.mark.firecracker
async def test_firecracker_end_to_end(images: GuestImages, settings: MicroVMSettings) -> None:
    reason = await _availability_or_skip()
    if reason:
        print(f"\nskipping the Firecracker end-to-end test: {reason}")
        pytest.skip(f"Firecracker canary failed on this host: {reason}")
    executor = FirecrackerExecutor(settings, images)
    try:
        r = await executor.run(make_spec(["/bin/sh", "-c", "cat; id -u; ls /sys/class/net"],
                                         payload=b"through vsock\n"))
        assert r.stdout == b"through vsock\n65534\nlo\n" and r.exit_code == 0
        assert r.extra["microvm"]["driver"] == "firecracker"
    finally:
        await executor.aclose()
