"""Every environment variable the server reads: one ``Var`` each (name, the ``Settings``
field it sets, its parser, an example and a bad value for the tests).

``faas.config.Settings.from_env`` reads them; nothing else in ``src`` reads the
environment, and a test fails on a ``FAAS_``/``FC_`` name in src that is not here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faas.errors import ValidationError
from faas.logs import parse_levels

#: The smallest microVM the tier boots (MiB): below it a guest (kernel + python3 +
#: agent) does not start reliably.
MIN_VM_MEMORY_MIB = 128


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


def _secret_key(raw: str) -> str:
    if len(raw.encode()) < 16:
        raise ValueError("must be at least 16 bytes")
    return raw


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


def _api_key(raw: str) -> str:
    from faas.tenancy.keys import KEY_PATTERN

    if not KEY_PATTERN.fullmatch(raw.strip()):
        raise ValueError("must be an API key as made by faas admin create-key (faas_...)")
    return raw.strip()


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
    Var("FAAS_API_KEY", "api_key", _api_key, "faas_0123456789ab_" + "k" * 43, "nope",
        secret=True),
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
    Var("FAAS_RECORDS", "invocations.record_sync", _bool, "0", "always"),
    Var("FAAS_RECORD_OUTPUT_BYTES", "invocations.record_output_bytes", _NONNEG, "1024", "-1"),
    Var("FAAS_RECORD_TTL_S", "invocations.record_ttl_s", _float(1), "3600", "0"),
    Var("FAAS_MAX_ASYNC_QUEUE", "invocations.max_async_queue", _POS, "100", "0"),
    Var("FAAS_MAX_ASYNC_QUEUE_BYTES", "invocations.max_async_queue_bytes", _POS, "1048576",
        "1G"),
    Var("FAAS_CALLBACK_RETRY_S", "invocations.callback_retry_s", _float(0), "60", "-1"),
    Var("FAAS_CALLBACK_ALLOW_PRIVATE", "invocations.callback_allow_private", _bool, "1",
        "perhaps"),
    Var("FAAS_CALLBACK_KEY", "invocations.callback_key", _secret_key, "0123456789abcdef",
        "short", secret=True),
    Var("FAAS_INSECURE", "tenancy.insecure", _bool, "1", "perhaps"),
    Var("FAAS_SECRET_KEY", "tenancy.secret_key", _str, "c2VjcmV0", secret=True),
    Var("FAAS_TENANT_MAX_CONCURRENCY", "tenancy.max_concurrency", _int(0), "4", "-1"),
    Var("FAAS_TENANT_RATE", "tenancy.rate_per_s", _float(0), "10", "-1"),
    Var("FAAS_TENANT_BURST", "tenancy.burst", _int(0), "20", "-1"),
    Var("FAAS_TENANT_MAX_QUEUED", "tenancy.max_queued", _int(0), "100", "-1"),
    Var("FAAS_TENANT_MAX_FUNCTIONS", "tenancy.max_functions", _POS, "50", "0"),
    Var("FAAS_TENANT_MAX_BUNDLE_BYTES", "tenancy.max_bundle_bytes", _POS, "1000000", "0"),
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
