"""Server settings, read and validated once, from the environment, at start.

Every variable the server reads is one entry of ``VARIABLES``
(``faas.config_vars``: name, the settings field it sets, its parser);
nothing else in ``src`` reads the environment. Every knob has a default
that is safe on a fresh host. A bad value (not a number, out of range, not
a boolean) raises ``ValidationError`` naming the variable, which
``faas serve`` and ``faas doctor`` print as one line.

Sections: ``Settings.invocations`` (records, the async queue, callbacks),
``Settings.tenancy`` (open mode, tenants' default quotas, the secrets' key),
``Settings.images`` (where guest images are and which ones to boot) and
``Settings.microvm`` (the microVM tier: its limits, pools, VMM binaries and
uids). ``FAAS_VM_MAX_VCPUS`` / ``FAAS_VM_MAX_MEMORY_MIB`` are the microVM
tier's own caps: unset, they are the server's ``FAAS_MAX_VCPUS`` /
``FAAS_MAX_MEMORY_MB``; set, they may only be lower (a VM asked for more is
clamped to them), never higher (the orchestrator refuses such requests).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faas.config_vars import VARIABLES
from faas.errors import ValidationError

MiB = 1024 * 1024
_REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"


def default_cache_dir() -> Path:
    """The repository's ignored ``.cache`` when running from a checkout, else ``~/.cache/faas``."""
    if (_REPO_ROOT / "pyproject.toml").is_file():
        return _REPO_ROOT / ".cache"
    return Path.home() / ".cache" / "faas"


def default_image_cache_dir() -> Path:
    """Where guest images are built when ``FAAS_IMAGE_CACHE`` is unset."""
    if (_REPO_ROOT / "pyproject.toml").is_file():
        return _REPO_ROOT / ".cache" / "images"
    return Path.home() / ".cache" / "faas" / "images"


@dataclass(frozen=True, slots=True)
class ImageSettings:
    """Guest images: the cache they are built in, and files that replace the built ones."""

    cache_dir: Path = field(default_factory=default_image_cache_dir)
    debian_mirror: str = DEFAULT_DEBIAN_MIRROR
    kernel_path: Path | None = None
    rootfs_path: Path | None = None
    initrd_path: Path | None = None


@dataclass(frozen=True, slots=True)
class InvocationSettings:
    """Invocation records, the async queue and callbacks (``faas.invocations``)."""

    #: record sync calls too (async calls are always recorded: the record is the queue)
    record_sync: bool = True
    record_output_bytes: int = 64 * 1024
    record_ttl_s: float = 7 * 24 * 3600.0
    max_async_queue: int = 10_000
    #: what the queued calls' requests (payloads, argv, env) may take in the store, in all
    max_async_queue_bytes: int = 1024 * MiB
    callback_retry_s: float = 3600.0
    callback_allow_private: bool = False
    callback_key: str = ""


@dataclass(frozen=True, slots=True)
class TenancySettings:
    """Who may call (``faas.tenancy``), tenants' default quotas, the secrets' master key."""

    #: run open (no keys) on a non-loopback address; open on loopback needs nothing
    insecure: bool = False
    #: base64 of 32 bytes; empty: ``<data_dir>/secret.key``, made on first start (0600)
    secret_key: str = ""
    #: per tenant; 0: the server's FAAS_MAX_CONCURRENCY
    max_concurrency: int = 0
    #: invocations per second per tenant (token bucket); 0: no rate limit
    rate_per_s: float = 0.0
    #: the bucket's size; 0: max(1, rate_per_s)
    burst: int = 0
    #: queued async calls per tenant; 0: FAAS_MAX_ASYNC_QUEUE
    max_queued: int = 0
    max_functions: int = 1000
    max_bundle_bytes: int = 10 * 1024 * MiB


@dataclass(frozen=True, slots=True)
class VMSettings:
    """The microVM tier. ``max_vcpus`` / ``max_memory_mib`` 0: the server's maxima."""

    max_vcpus: int = 0
    max_memory_mib: int = 0
    pool_min: int = 1
    pool_max: int = 4
    pool_idle_s: float = 60.0
    pool_memory_mb: int = 1024
    snapshots: bool = True
    parallel_starts: int = field(default_factory=lambda: os.cpu_count() or 1)
    qemu_binary: str = "qemu-system-x86_64"
    qemu_kaslr: bool = True
    qemu_runas: bool = True  # debug: 0 keeps every VMM as the server's own uid
    qemu_sandbox: bool = True  # debug: 0 turns QEMU's seccomp sandbox off
    fc_binary: Path | None = None
    fc_jailer_path: Path | None = None
    fc_jailer: bool = True
    vmm_uid_base: int = 300_000
    vmm_uids: int = 1024
    vmm_uid_lock_dir: Path = Path("/run/faas-vmm-uids")


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    # Client commands (faas deploy, invoke, functions): the server's URL; empty:
    # http://{host}:{port}, the address `faas serve` listens on (faas.client.url).
    url: str = ""
    # Client commands: the API key they send (``Authorization: Bearer``); empty: none.
    api_key: str = ""
    log_level: str = "info"
    default_executor: str = "sandbox"
    executors: tuple[str, ...] = ("sandbox", "docker", "microvm", "qemu", "firecracker")
    max_concurrency: int = 32
    max_queue: int = 128
    default_timeout_s: float = 30.0
    max_timeout_s: float = 300.0
    max_payload_bytes: int = 6 * MiB
    output_limit_bytes: int = 1 * MiB
    default_memory_mb: int = 256
    max_memory_mb: int = 2048
    pids_limit: int = 128
    tmp_size_mb: int = 64
    file_size_mb: int = 64
    max_vcpus: int = 2
    shutdown_grace_s: float = 10.0
    # Hostile clients: a request's headers, and then its body, must arrive
    # within this many seconds; open connections are capped (0: derived from
    # the open-file limit); request bodies being read or held by invocations
    # share this many bytes of memory (0: four times the payload limit).
    http_read_timeout_s: float = 15.0
    max_connections: int = 0
    body_memory_bytes: int = 0
    cgroup_root: str = "faas"
    sandbox_uid_base: int = 200000
    cache_dir: Path = field(default_factory=default_cache_dir)
    sandbox_rootfs: str = ""
    vm_run_dir: str = ""
    docker_host: str = "unix:///var/run/docker.sock"
    docker_image: str = "faas-rootfs:latest"
    docker_runtime: str = ""
    # The store: SQLite in ``data_dir`` unless ``database_url`` names a database
    # (which may hold a password: never echoed).
    data_dir: Path = Path(".data")
    database_url: str = ""
    # Deployed functions: bundle sizes (Lambda's), and whether an id that is
    # not deployed may still be invoked with an ad hoc command.
    max_bundle_bytes: int = 50 * MiB
    max_bundle_unpacked_bytes: int = 250 * MiB
    allow_adhoc: bool = True
    images: ImageSettings = field(default_factory=ImageSettings)
    microvm: VMSettings = field(default_factory=VMSettings)
    invocations: InvocationSettings = field(default_factory=InvocationSettings)
    tenancy: TenancySettings = field(default_factory=TenancySettings)

    @property
    def max_body_bytes(self) -> int:
        """Largest HTTP body: the largest payload in base64, plus room for argv and env.

        A payload sent as a JSON array of numbers (the seed's form) takes up
        to four bytes a byte and is limited to ``MAX_PAYLOAD_ARRAY`` bytes.
        """
        return 4 * ((self.max_payload_bytes + 2) // 3) + 512 * 1024

    @property
    def body_budget_bytes(self) -> int:
        return self.body_memory_bytes or 4 * self.max_payload_bytes

    @property
    def vm_max_vcpus(self) -> int:
        return self.microvm.max_vcpus or self.max_vcpus

    @property
    def vm_max_memory_mib(self) -> int:
        return self.microvm.max_memory_mib or self.max_memory_mb

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every variable of ``VARIABLES`` (unset or empty: the default)."""
        env = os.environ if env is None else env
        sections: dict[str, dict[str, Any]] = {"": {}, "images": {}, "microvm": {},
                                                "invocations": {}, "tenancy": {}}
        for var in VARIABLES:
            raw = env.get(var.name)
            if raw is None or raw == "":
                continue
            try:
                value = var.parse(raw)
            except ValueError as exc:
                shown = "" if var.secret else f"={raw[:100]!r}"
                raise ValidationError(f"{var.name}{shown}: {exc}") from None
            section, _, name = var.attr.rpartition(".")
            sections[section][name] = value
        settings = dataclasses.replace(
            cls(), images=ImageSettings(**sections["images"]),
            microvm=VMSettings(**sections["microvm"]),
            invocations=InvocationSettings(**sections["invocations"]),
            tenancy=TenancySettings(**sections["tenancy"]), **sections[""])
        settings.check()
        return settings

    def check(self) -> None:
        """Rules between variables (each one alone was checked when it was read)."""
        if not 0 < self.port < 65536:
            raise ValidationError(f"FAAS_GATEWAY_PORT must be 1-65535, not {self.port}")
        if self.max_concurrency < 1 or self.max_queue < 0:
            raise ValidationError("FAAS_MAX_CONCURRENCY must be >= 1 and FAAS_MAX_QUEUE >= 0")
        if not 0 < self.default_timeout_s <= self.max_timeout_s:
            raise ValidationError("need 0 < FAAS_DEFAULT_TIMEOUT_S <= FAAS_MAX_TIMEOUT_S")
        if not 16 <= self.default_memory_mb <= self.max_memory_mb:
            raise ValidationError("need 16 <= FAAS_DEFAULT_MEMORY_MB <= FAAS_MAX_MEMORY_MB")
        if not 0 < self.http_read_timeout_s <= 3600:
            raise ValidationError("FAAS_HTTP_READ_TIMEOUT_S must be in (0, 3600]")
        if self.max_connections < 0 or self.body_memory_bytes < 0:
            raise ValidationError("FAAS_MAX_CONNECTIONS and FAAS_BODY_MEMORY_BYTES must be >= 0")
        if self.default_executor not in self.executors:
            raise ValidationError(
                f"FAAS_DEFAULT_EXECUTOR={self.default_executor!r} is not in FAAS_EXECUTORS"
            )
        if self.microvm.max_vcpus > self.max_vcpus:
            raise ValidationError(f"FAAS_VM_MAX_VCPUS={self.microvm.max_vcpus} exceeds "
                                  f"FAAS_MAX_VCPUS={self.max_vcpus}")
        if self.microvm.max_memory_mib > self.max_memory_mb:
            raise ValidationError(f"FAAS_VM_MAX_MEMORY_MIB={self.microvm.max_memory_mib} "
                                  f"exceeds FAAS_MAX_MEMORY_MB={self.max_memory_mb}")


# -- parsers: each raises ValueError saying what was expected ------------------------------
