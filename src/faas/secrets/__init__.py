"""Per-tenant secrets: names, encryption at rest, and delivery into sandboxes.

``names``: what a secret may be called and how large it may be (shared by
the API, the store and every tier). ``cipher``: the master key and AES-256-GCM
sealing. ``service``: ``Secrets`` (put, meta, list, delete, ``for_call``).
``rotation``: re-encrypting every row under a new master key.
"""
