"""Stored records as the HTTP contract's JSON objects (version, summary, function)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from faas.functions.spec import DEFAULT_CONTENT_TYPE
from faas.store import BundleRef, FunctionInfo, FunctionSpec, FunctionVersion
from faas.tenancy.principal import unqualify


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: ``2026-11-28T20:31:02.123456Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def spec_json(spec: FunctionSpec) -> dict[str, Any]:
    """Every key of the spec; ``null`` limits mean the server's default at call time."""
    return {
        "command": list(spec.command), "image": spec.image, "executor": spec.executor,
        "env_vars": dict(spec.env_vars), "timeout_s": spec.timeout_s,
        "memory_mb": spec.memory_mb, "vcpus": spec.vcpus,
        "max_concurrency": spec.max_concurrency, "description": spec.description,
        "labels": dict(spec.labels), "content_type": spec.content_type or DEFAULT_CONTENT_TYPE,
        "max_attempts": spec.max_attempts, "retry_timeouts": spec.retry_timeouts,
        "retry_failures": spec.retry_failures, "secrets": list(spec.secrets),
    }


def bundle_json(bundle: BundleRef | None) -> dict[str, Any] | None:
    if bundle is None:
        return None
    return {"sha256": bundle.sha256, "packed_bytes": bundle.packed_bytes,
            "unpacked_bytes": bundle.unpacked_bytes}


def version_json(version: FunctionVersion) -> dict[str, Any]:
    return {"id": unqualify(version.function_id), "version": version.version,
            "created_at": iso(version.created_at), "spec": spec_json(version.spec),
            "bundle": bundle_json(version.spec.bundle)}


def summary_json(info: FunctionInfo) -> dict[str, Any]:
    return {"id": unqualify(info.function_id), "latest_version": info.latest_version,
            "description": info.latest.spec.description, "labels": dict(info.latest.spec.labels),
            "created_at": iso(info.created_at), "updated_at": iso(info.updated_at)}


def function_json(info: FunctionInfo) -> dict[str, Any]:
    return {"id": unqualify(info.function_id), "latest_version": info.latest_version,
            "versions": list(info.versions), "created_at": iso(info.created_at),
            "updated_at": iso(info.updated_at), "spec": spec_json(info.latest.spec),
            "bundle": bundle_json(info.latest.spec.bundle),
            "invocations": dict(info.invocations)}
