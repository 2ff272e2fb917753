"""Invocation records, the durable async queue, and callbacks."""
