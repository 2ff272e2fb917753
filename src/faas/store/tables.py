"""The head schema as SQLAlchemy Core tables, for building queries.

``migrations.py`` creates these (raw DDL, frozen per version); a change here
needs a new migration there, and the upgrade test proves they agree.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Integer, LargeBinary, MetaData, Table, Text

metadata = MetaData()

functions = Table(
    "functions", metadata,
    Column("id", Text, primary_key=True),
    Column("latest_version", Integer, nullable=False),
    #: the first version of the function's current life (see FunctionInfo)
    Column("first_version", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    #: set while the function is deleted; its versions stay for the records that name them
    Column("deleted_at", BigInteger),
    #: the packed size of the latest version's bundle (0: none), for the tenant's quota
    Column("bundle_bytes", BigInteger, nullable=False, server_default="0"),
)

function_versions = Table(
    "function_versions", metadata,
    Column("function_id", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("spec", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

#: the labels of each live function's latest version, indexed by (key, value)
function_labels = Table(
    "function_labels", metadata,
    Column("function_id", Text, primary_key=True),
    Column("label_key", Text, primary_key=True),
    Column("label_value", Text, nullable=False),
)

invocation_counts = Table(
    "invocation_counts", metadata,
    Column("function_id", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("outcome", Text, primary_key=True),
    Column("invocations", BigInteger, nullable=False),
)

#: One row per invocation, sync or async: the record, and for async calls the queue entry
#: (``status`` "queued", ``request`` what to run). Flags are 0/1 integers on both engines.
invocations = Table(
    "invocations", metadata,
    Column("id", Text, primary_key=True),
    Column("request_id", Text, nullable=False),
    Column("function_id", Text, nullable=False),
    Column("version", Integer),
    Column("tenant", Text),
    Column("mode", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("accepted_at", BigInteger, nullable=False),
    Column("started_at", BigInteger),
    Column("finished_at", BigInteger),
    #: a queued call is not claimed before this (retry backoff)
    Column("not_before", BigInteger, nullable=False),
    #: who runs it ("<host>|<boot id>|<instance id>"), while it runs
    Column("owner", Text),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("retry_timeouts", Integer, nullable=False),
    Column("retry_failures", Integer, nullable=False),
    Column("concurrency_cap", Integer),
    #: what to run (the call as JSON), kept until the call is final
    Column("request", LargeBinary),
    #: the size of ``request`` when it was queued (the queue's bytes are bounded)
    Column("request_bytes", Integer, nullable=False),
    Column("executor", Text),
    Column("start_kind", Text),
    Column("start_ms", Float),
    Column("duration_ms", Float),
    Column("exit_code", Integer),
    Column("signal", Integer),
    Column("error", Text),
    Column("stdout", LargeBinary),
    Column("stderr", LargeBinary),
    Column("stdout_truncated", Integer, nullable=False),
    Column("stderr_truncated", Integer, nullable=False),
    Column("output_encoding", Text, nullable=False),
    Column("callback_url", Text),
    Column("callback_state", Text),
    Column("callback_attempts", Integer, nullable=False),
    Column("callback_next_at", BigInteger),
    Column("callback_error", Text),
    Column("callback_delivered_at", BigInteger),
    #: the id of the API key that made the call (None: the server ran open)
    Column("caller", Text),
)

#: An async call's Idempotency-Key: (function, key) names one invocation until it expires.
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("function_id", Text, primary_key=True),
    Column("idempotency_key", Text, primary_key=True),
    Column("invocation_id", Text, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

tenants = Table(
    "tenants", metadata,
    Column("name", Text, primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    #: the tenant's quota overrides as a JSON object (absent: the server's defaults)
    Column("quotas", Text, nullable=False),
)

#: API keys: only the SHA-256 of each key is kept (``faas.tenancy.keys``).
api_keys = Table(
    "api_keys", metadata,
    Column("id", Text, primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("key_hash", LargeBinary, nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger),
    Column("revoked_at", BigInteger),
    Column("created_by", Text),
)

#: A tenant's secrets, encrypted (``faas.secrets``): ``key_id`` names the master key.
secrets = Table(
    "secrets", metadata,
    Column("tenant", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("size", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

#: Who did what: keys made and revoked, functions deployed and deleted, secrets set.
audit_log = Table(
    "audit_log", metadata,
    Column("id", Text, primary_key=True),
    Column("at", BigInteger, nullable=False),
    Column("tenant", Text, nullable=False),
    Column("actor", Text),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("detail", Text),
)
