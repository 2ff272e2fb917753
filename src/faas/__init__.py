"""faas: run untrusted code in a fresh sandbox per invocation, behind an HTTP gateway."""

__version__ = "0.1.0"
