"""Per-tenant secrets: names, encryption at rest, and delivery into sandboxes.

``names``: what a secret may be called and how large it may be (shared by
the API, the store and every tier); ``values``: one call's secrets as the
executors get them (``Secret``, whose ``repr`` never shows a value, and
``check_secrets``).
"""
