"""The guest agent: its framed wire protocol and the process that serves it.

Run as ``python -m faas.agent`` inside a sandbox or VM; see ``__main__``.
"""
