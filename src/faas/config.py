"""Server settings, read once from the environment.

Every knob has a default that is safe on a fresh host; ``Settings.from_env``
names the variable behind each field (see the README's configuration table).
Invalid values raise ``ValidationError`` with the variable's name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from faas.errors import ValidationError

MiB = 1024 * 1024
_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_cache_dir() -> Path:
    """The repository's ignored ``.cache`` when running from a checkout, else ``~/.cache/faas``."""
    if (_REPO_ROOT / "pyproject.toml").is_file():
        return _REPO_ROOT / ".cache"
    return Path.home() / ".cache" / "faas"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            var = _ENV_NAMES.get(f.name, "FAAS_" + f.name.upper())
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            default = f.default
            if default is MISSING and f.default_factory is not MISSING:
                default = f.default_factory()
            try:
                if isinstance(default, bool):
                    values[f.name] = raw.lower() in ("1", "true", "yes", "on")
                elif isinstance(default, int):
                    values[f.name] = int(raw)
                elif isinstance(default, float):
                    values[f.name] = float(raw)
                elif isinstance(default, tuple):
                    values[f.name] = tuple(p.strip() for p in raw.split(",") if p.strip())
                elif isinstance(default, Path):
                    values[f.name] = Path(raw)
                else:
                    values[f.name] = raw
            except ValueError as exc:
                raise ValidationError(f"{var}={raw!r}: {exc}") from exc
        if "log_level" not in values and env.get("RUST_LOG"):
            values["log_level"] = env["RUST_LOG"]
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
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


_ENV_NAMES = {"port": "FAAS_GATEWAY_PORT", "log_level": "FAAS_LOG"}
