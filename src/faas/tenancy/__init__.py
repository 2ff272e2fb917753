"""Tenants, API keys and who is calling: the platform shared by many teams.

``principal``: roles, the caller (``Principal``) and tenant-qualified
function ids; ``keys``: API key material (generation, hashing, parsing).
"""
