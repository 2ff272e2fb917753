"""The head schema as SQLAlchemy Core tables, for building queries.

``migrations.py`` creates these (raw DDL, frozen per version); a change here
needs a new migration there, and the upgrade test proves they agree.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text

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
