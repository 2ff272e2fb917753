"""Server settings, read and validated once, from the environment, at start.

Every variable the server reads is one entry of ``VARIABLES`` (name, the
settings field it sets, its parser); nothing else in ``src`` reads the
environment. Every knob has a default that is safe on a fresh host. A bad
value (not a number, out of range, not a boolean) raises ``ValidationError``
naming the variable, which ``faas serve`` and ``faas doctor`` print as one line.

Sections: ``Settings.images`` (where guest images are and which ones to
boot) and ``Settings.microvm`` (the microVM tier: its limits, pools, VMM
binaries and uids). ``FAAS_VM_MAX_VCPUS`` / ``FAAS_VM_MAX_MEMORY_MIB`` are the
microVM tier's own caps: unset, they are the server's ``FAAS_MAX_VCPUS`` /
``FAAS_MAX_MEMORY_MB``; set, they may only be lower (a VM asked for more is
clamped to them), never higher (the orchestrator refuses such requests).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faas.errors import ValidationError
from faas.logs import parse_levels

MiB = 1024 * 1024
_REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Below this a guest (kernel + python3 + agent) does not start reliably.
MIN_VM_MEMORY_MIB = 128


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
        sections: dict[str, dict[str, Any]] = {"": {}, "images": {}, "microvm": {}}
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
            microvm=VMSettings(**sections["microvm"]), **sections[""])
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


def _int(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("not an integer") from None
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be {low}-{high}" if high is not None else f"must be >= {low}")
        return value
    return parse


def _float(low: float, high: float | None = None) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("not a number") from None
        if not value >= low or (high is not None and value > high):  # NaN fails too
            raise ValueError(f"must be {low:g}-{high:g}" if high is not None
                             else f"must be >= {low:g}")
        return value
    return parse


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}


def _bool(raw: str) -> bool:
    try:
        return _BOOLEANS[raw.strip().lower()]
    except KeyError:
        raise ValueError("not a boolean (1/0, true/false, yes/no, on/off)") from None


def _str(raw: str) -> str:
    return raw


def _path(raw: str) -> Path:
    return Path(raw)


def _names(raw: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in raw.split(",") if p.strip())
    if not names:
        raise ValueError("no executor named")
    return names


def _database_url(raw: str) -> str:
    from faas.store.url import parse_database_url

    try:
        parse_database_url(raw, Path())
    except ValidationError as exc:
        raise ValueError(str(exc).removeprefix("FAAS_DATABASE_URL").lstrip(": ")) from None
    return raw


def parse_url(raw: str) -> str:
    """An http(s) URL with a host, without a trailing slash (ValueError says why not)."""
    from urllib.parse import urlsplit

    parts = urlsplit(raw.strip())
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise ValueError("has a bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return raw.strip().rstrip("/")


def _log_level(raw: str) -> str:
    parse_levels(raw)  # ValueError names the bad part
    return raw


@dataclass(frozen=True, slots=True)
class Var:
    """One environment variable: the settings field it sets (``section.field`` for a
    section's), its parser; for the tests a valid non-default ``example`` and, where
    one exists, a ``bad`` value; ``debug``: for debugging only, weakens isolation."""

    name: str
    attr: str
    parse: Callable[[str], Any]
    example: str
    bad: str | None = None
    debug: bool = False
    secret: bool = False  # its value is never echoed in an error


_POS = _int(1)
_NONNEG = _int(0)

VARIABLES: tuple[Var, ...] = (
    Var("FAAS_HOST", "host", _str, "127.0.0.2"),
    Var("FAAS_GATEWAY_PORT", "port", _int(1, 65535), "9000", "http"),
    Var("FAAS_URL", "url", parse_url, "http://faas.example:9000", "localhost:8080"),
    Var("RUST_LOG", "log_level", _log_level, "debug", "loud"),  # FAAS_LOG wins
    Var("FAAS_LOG", "log_level", _log_level, "faas_gateway=debug,warn", "loud"),
    Var("FAAS_DEFAULT_EXECUTOR", "default_executor", _str, "docker", "nope"),
    Var("FAAS_EXECUTORS", "executors", _names, "sandbox,qemu", ","),
    Var("FAAS_MAX_CONCURRENCY", "max_concurrency", _POS, "3", "0"),
    Var("FAAS_MAX_QUEUE", "max_queue", _NONNEG, "7", "-1"),
    Var("FAAS_DEFAULT_TIMEOUT_S", "default_timeout_s", _float(0.001), "5", "900"),
    Var("FAAS_MAX_TIMEOUT_S", "max_timeout_s", _float(0.001), "600", "soon"),
    Var("FAAS_MAX_PAYLOAD_BYTES", "max_payload_bytes", _POS, "1024", "0"),
    Var("FAAS_OUTPUT_LIMIT_BYTES", "output_limit_bytes", _POS, "4096", "1k"),
    Var("FAAS_DEFAULT_MEMORY_MB", "default_memory_mb", _POS, "128", "8"),
    Var("FAAS_MAX_MEMORY_MB", "max_memory_mb", _POS, "4096", "2G"),
    Var("FAAS_PIDS_LIMIT", "pids_limit", _POS, "64", "0"),
    Var("FAAS_TMP_SIZE_MB", "tmp_size_mb", _POS, "32", "0"),
    Var("FAAS_FILE_SIZE_MB", "file_size_mb", _POS, "32", "0"),
    Var("FAAS_MAX_VCPUS", "max_vcpus", _POS, "4", "0"),
    Var("FAAS_SHUTDOWN_GRACE_S", "shutdown_grace_s", _float(0), "2.5", "-1"),
    Var("FAAS_HTTP_READ_TIMEOUT_S", "http_read_timeout_s", _float(0.001, 3600), "2", "7200"),
    Var("FAAS_MAX_CONNECTIONS", "max_connections", _NONNEG, "500", "-5"),
    Var("FAAS_BODY_MEMORY_BYTES", "body_memory_bytes", _NONNEG, "100000000", "lots"),
    Var("FAAS_CGROUP_ROOT", "cgroup_root", _str, "faas-test"),
    Var("FAAS_SANDBOX_UID_BASE", "sandbox_uid_base", _POS, "400000", "0"),
    Var("FAAS_CACHE_DIR", "cache_dir", _path, "/var/cache/faas"),
    Var("FAAS_DATA_DIR", "data_dir", _path, "/var/lib/faas"),
    Var("FAAS_DATABASE_URL", "database_url", _database_url, "postgresql://faas:pw@db:5432/faas",
        "mysql://root:hunter2@db/faas", secret=True),
    Var("FAAS_MAX_BUNDLE_BYTES", "max_bundle_bytes", _POS, "1048576", "0"),
    Var("FAAS_MAX_BUNDLE_UNPACKED_BYTES", "max_bundle_unpacked_bytes", _POS, "4194304", "-1"),
    Var("FAAS_ALLOW_ADHOC", "allow_adhoc", _bool, "0", "sometimes"),
    Var("FAAS_SANDBOX_ROOTFS", "sandbox_rootfs", _str, "/srv/rootfs"),
    Var("FAAS_VM_RUN_DIR", "vm_run_dir", _str, "/run/faas-vms"),
    Var("FAAS_DOCKER_HOST", "docker_host", _str, "unix:///tmp/docker.sock"),
    Var("FAAS_DOCKER_IMAGE", "docker_image", _str, "python:3.12"),
    Var("FAAS_DOCKER_RUNTIME", "docker_runtime", _str, "runsc"),
    Var("FAAS_IMAGE_CACHE", "images.cache_dir", _path, "/var/cache/faas-images"),
    Var("FAAS_DEBIAN_MIRROR", "images.debian_mirror", _str, "http://mirror.example/debian"),
    Var("FC_KERNEL_PATH", "images.kernel_path", _path, "/srv/vmlinux"),
    Var("FC_ROOTFS_PATH", "images.rootfs_path", _path, "/srv/rootfs.ext4"),
    Var("FAAS_INITRD_PATH", "images.initrd_path", _path, "/srv/initrd.cpio"),
    Var("FAAS_VM_MAX_VCPUS", "microvm.max_vcpus", _POS, "1", "3"),
    Var("FAAS_VM_MAX_MEMORY_MIB", "microvm.max_memory_mib", _int(MIN_VM_MEMORY_MIB), "512",
        "64"),
    Var("FAAS_POOL_MIN", "microvm.pool_min", _NONNEG, "2", "-1"),
    Var("FAAS_POOL_MAX", "microvm.pool_max", _NONNEG, "0", "four"),
    Var("FAAS_POOL_IDLE_S", "microvm.pool_idle_s", _float(0), "5", "-3"),
    Var("FAAS_POOL_MEMORY_MB", "microvm.pool_memory_mb", _NONNEG, "512", "1.5"),
    Var("FAAS_VM_SNAPSHOT", "microvm.snapshots", _bool, "0", "2"),
    Var("FAAS_VM_PARALLEL_STARTS", "microvm.parallel_starts", _POS, "64", "0"),
    Var("FAAS_QEMU_BINARY", "microvm.qemu_binary", _str, "/opt/qemu/bin/qemu-system-x86_64"),
    Var("FAAS_QEMU_KASLR", "microvm.qemu_kaslr", _bool, "off", "maybe"),
    Var("FAAS_QEMU_RUNAS", "microvm.qemu_runas", _bool, "0", "nobody", debug=True),
    Var("FAAS_QEMU_SANDBOX", "microvm.qemu_sandbox", _bool, "0", "x", debug=True),
    Var("FC_BINARY_PATH", "microvm.fc_binary", _path, "/opt/fc/firecracker"),
    Var("FC_JAILER_PATH", "microvm.fc_jailer_path", _path, "/opt/fc/jailer"),
    Var("FAAS_FC_JAILER", "microvm.fc_jailer", _bool, "no", "jail", debug=True),
    Var("FAAS_VMM_UID_BASE", "microvm.vmm_uid_base", _POS, "500000", "root"),
    Var("FAAS_VMM_UIDS", "microvm.vmm_uids", _POS, "16", "0"),
    Var("FAAS_VMM_UID_LOCK_DIR", "microvm.vmm_uid_lock_dir", _path, "/var/lib/faas-uids"),
)
