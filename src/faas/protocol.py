"""The guest agent's wire protocol: one framing, whatever byte stream carries it.

A frame is a fixed 12-byte head then a body::

    magic   4 bytes  b"FAAS"
    version 1 byte   PROTOCOL_VERSION
    kind    1 byte   Kind (HELLO, REQUEST, REPLY, ERROR)
    flags   2 bytes  zero (reserved)
    length  4 bytes  big-endian length of the body

    body    4-byte big-endian length of a UTF-8 JSON header, the header, then
            the binary blobs whose lengths the header lists under "blobs".

The agent sends HELLO when it is ready (header: ``agent`` version and, from
agent version 2, ``features``), reads one REQUEST (header: command,
env, timeout_s, output_limit; blob: stdin), runs it and answers with one REPLY
(header: result fields; blobs: stdout, stderr), or an ERROR (header: error) for
a frame it cannot accept. Binary data never goes through JSON, so output is
carried byte for byte.

PING (agent version 2, feature ``"ping"``) is the re-handshake of a VM restored
from a snapshot, whose agent said HELLO before the snapshot was taken: the host
sends PING (header: ``time`` in seconds since the epoch; blob: fresh random
bytes), the agent mixes the bytes into the kernel's random pool, reseeds it,
sets the clock, optionally (``warmup``) runs ``true`` once, and answers HELLO
again (header ``resumed: true``). A host
sends PING only to an agent whose HELLO listed the feature, so old agents and
old hosts keep working.

FUNCTION (agent version 3, feature ``"function"``): a REQUEST may carry the
deployed function's code as a second blob, an uncompressed tar of the
bundle's tree (header ``bundle``: its sha256). The agent unpacks it into a
size-capped tmpfs at ``/function``, remounts that read-only and only then
runs the command. A host sends it only to an agent whose HELLO listed the
feature; an old agent would reject the second blob. The agent reads a
REQUEST of up to ``MAX_REQUEST_FRAME`` (the host is trusted); the host reads
a REPLY only up to twice the output limit plus a MiB, so a guest cannot send
it giant frames.

SECRETS (agent version 4, feature ``"secrets"``): a REQUEST may carry the
call's secrets, their names in the header (``secrets``: a list) and their
values as the last blobs, one each, in the same order. The agent writes them
as 0400 files of the commands' user into a size-capped tmpfs at
``/run/secrets`` (0500), remounts it read-only and only then runs the
command. They travel per request, never at boot, so pooled and restored VMs
get them like any other; never on the kernel command line or in the
environment. A host sends them only to an agent whose HELLO listed the
feature (an old agent would reject the extra blobs); without the feature, a
call with secrets fails. ``AgentRequest``'s repr hides their values.

A reader rejects a bad magic or version, a length over its limit, a header
that is not a JSON object, and blob lengths that do not add up, with
``AgentProtocolError``; a stream that ends mid-frame raises it too.
"""

from __future__ import annotations

import asyncio
import enum
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from faas.errors import AgentProtocolError
from faas.secrets.names import MAX_SECRET_BYTES, MAX_SECRETS_PER_FUNCTION, check_secret_name

MAGIC = b"FAAS"
PROTOCOL_VERSION = 1
_HEAD = struct.Struct(">4sBBHI")
_U32 = struct.Struct(">I")
HEAD_SIZE = _HEAD.size
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
#: The largest bundle tar a REQUEST may carry: the bundles' default unpacked
#: maximum (250 MiB) plus tar's headers and padding for its 20 000 entries.
MAX_BUNDLE_TAR = 280 * 1024 * 1024
#: What the agent accepts from the host: stdin (as before) plus a bundle.
MAX_REQUEST_FRAME = DEFAULT_MAX_FRAME + MAX_BUNDLE_TAR


class Kind(enum.IntEnum):
    HELLO = 1
    REQUEST = 2
    REPLY = 3
    ERROR = 4
    PING = 5


@dataclass(slots=True)
class Frame:
    kind: Kind
    header: dict[str, Any]
    blobs: list[bytes] = field(default_factory=list)


def encode_frame(kind: Kind, header: dict[str, Any], blobs: list[bytes] | None = None) -> bytes:
    blobs = blobs or []
    head_json = json.dumps({**header, "blobs": [len(b) for b in blobs]}).encode()
    body_len = _U32.size + len(head_json) + sum(len(b) for b in blobs)
    return b"".join(
        [_HEAD.pack(MAGIC, PROTOCOL_VERSION, kind, 0, body_len), _U32.pack(len(head_json)),
         head_json, *blobs]
    )


def parse_head(head: bytes, max_frame: int) -> tuple[Kind, int]:
    """Validate a 12-byte frame head; return (kind, body length)."""
    magic, version, kind, _flags, length = _HEAD.unpack(head)
    if magic != MAGIC:
        raise AgentProtocolError(f"bad frame magic {magic!r}")
    if version != PROTOCOL_VERSION:
        raise AgentProtocolError(f"unsupported protocol version {version}")
    try:
        frame_kind = Kind(kind)
    except ValueError:
        raise AgentProtocolError(f"unknown frame kind {kind}") from None
    if length > max_frame:
        raise AgentProtocolError(f"frame of {length} bytes exceeds the {max_frame}-byte limit")
    return frame_kind, length


def parse_body(kind: Kind, body: bytes) -> Frame:
    if len(body) < _U32.size:
        raise AgentProtocolError("frame body shorter than its header length")
    (head_len,) = _U32.unpack_from(body)
    end = _U32.size + head_len
    if end > len(body):
        raise AgentProtocolError("frame header runs past the body")
    try:
        header = json.loads(body[_U32.size : end])
    except (UnicodeDecodeError, ValueError) as exc:
        raise AgentProtocolError("frame header is not valid JSON") from exc
    if not isinstance(header, dict):
        raise AgentProtocolError("frame header is not a JSON object")
    sizes = header.pop("blobs", [])
    if not isinstance(sizes, list) or not all(isinstance(n, int) and n >= 0 for n in sizes):
        raise AgentProtocolError("frame blob sizes are malformed")
    if end + sum(sizes) != len(body):
        raise AgentProtocolError("frame blob sizes do not match the body length")
    blobs = []
    for size in sizes:
        blobs.append(body[end : end + size])
        end += size
    return Frame(kind, header, blobs)


async def read_frame(
    reader: asyncio.StreamReader,
    *,
    max_frame: int = DEFAULT_MAX_FRAME,
    body_timeout_s: float | None = 30.0,
) -> Frame | None:
    """Read one frame; ``None`` on a clean end of stream before any byte.

    Once a head has arrived the body must follow within ``body_timeout_s``,
    so a peer that stops mid-frame cannot hang the reader.
    """
    try:
        head = await reader.readexactly(HEAD_SIZE)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise AgentProtocolError("stream ended inside a frame head") from exc
    kind, length = parse_head(head, max_frame)
    try:
        async with asyncio.timeout(body_timeout_s):
            body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise AgentProtocolError("stream ended inside a frame body") from exc
    except TimeoutError as exc:
        raise AgentProtocolError("timed out waiting for the rest of a frame") from exc
    return parse_body(kind, body)


@dataclass(slots=True)
class AgentRequest:
    command: list[str]
    env: dict[str, str]
    stdin: bytes = b""
    timeout_s: float = 30.0
    output_limit: int = 1024 * 1024
    #: The function's code for /function: (sha256, uncompressed tar), or None.
    bundle: tuple[str, bytes] | None = None
    #: The call's secrets for /run/secrets: (name, value) pairs (feature "secrets").
    secrets: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    def encode(self) -> bytes:
        header: dict[str, Any] = {"command": self.command, "env": self.env,
                                  "timeout_s": self.timeout_s,
                                  "output_limit": self.output_limit}
        blobs = [self.stdin]
        if self.bundle is not None:
            header["bundle"] = self.bundle[0]
            blobs.append(self.bundle[1])
        if self.secrets:
            header["secrets"] = [name for name, _ in self.secrets]
            blobs += [value for _, value in self.secrets]
        return encode_frame(Kind.REQUEST, header, blobs)

    @classmethod
    def from_frame(cls, frame: Frame) -> AgentRequest:
        h = frame.header
        command, env = h.get("command"), h.get("env", {})
        if (not isinstance(command, list) or not command
                or not all(isinstance(a, str) for a in command)):
            raise AgentProtocolError("request command must be a non-empty list of strings")
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise AgentProtocolError("request env must map strings to strings")
        timeout_s, limit = h.get("timeout_s", 30.0), h.get("output_limit", 1024 * 1024)
        if not isinstance(timeout_s, int | float) or timeout_s <= 0:
            raise AgentProtocolError("request timeout_s must be a positive number")
        if not isinstance(limit, int) or limit < 0:
            raise AgentProtocolError("request output_limit must be a non-negative integer")
        sha256 = h.get("bundle")
        if sha256 is not None and not isinstance(sha256, str):
            raise AgentProtocolError("request bundle must be a string (its sha256)")
        names = _secret_names(h.get("secrets", []))
        first_secret = 1 if sha256 is None else 2
        if len(frame.blobs) != first_secret + len(names):
            raise AgentProtocolError("request must carry one blob (stdin), the bundle's tar "
                                     "next if it names one, then one per secret it names")
        bundle = None if sha256 is None else (sha256, frame.blobs[1])
        if bundle is not None and len(bundle[1]) > MAX_BUNDLE_TAR:
            raise AgentProtocolError(f"request bundle exceeds {MAX_BUNDLE_TAR} bytes")
        secrets = tuple(zip(names, frame.blobs[first_secret:], strict=True))
        if any(len(value) > MAX_SECRET_BYTES for _, value in secrets):
            raise AgentProtocolError(f"a request secret exceeds {MAX_SECRET_BYTES} bytes")
        return cls(command, env, frame.blobs[0], float(timeout_s), limit, bundle, secrets)


def _secret_names(names: Any) -> list[str]:
    """The request's secret names, each a safe file name and given once."""
    if not isinstance(names, list) or len(names) > MAX_SECRETS_PER_FUNCTION:
        raise AgentProtocolError(f"request secrets must be a list of at most "
                                 f"{MAX_SECRETS_PER_FUNCTION} names")
    try:
        checked = [check_secret_name(name) for name in names]
    except ValueError as exc:
        raise AgentProtocolError(f"request secrets: {exc}") from None
    if len(set(checked)) != len(checked):
        raise AgentProtocolError("request secrets name one secret twice")
    return checked


def encode_ping(entropy: bytes, now: float, *, warmup: bool = False) -> bytes:
    """The host's re-handshake after a snapshot restore (see the module docstring);
    ``warmup``: the agent first runs ``true`` once, so that a pooled VM's first
    real request finds the code paths warm."""
    return encode_frame(Kind.PING, {"time": now, "warmup": warmup}, [entropy])


@dataclass(slots=True)
class AgentReply:
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_ms: float = 0.0

    def encode(self) -> bytes:
        header = {"exit_code": self.exit_code, "signal": self.signal, "error": self.error,
                  "timed_out": self.timed_out, "stdout_truncated": self.stdout_truncated,
                  "stderr_truncated": self.stderr_truncated, "duration_ms": self.duration_ms}
        return encode_frame(Kind.REPLY, header, [self.stdout, self.stderr])

    @classmethod
    def from_frame(cls, frame: Frame) -> AgentReply:
        if frame.kind is Kind.ERROR:
            raise AgentProtocolError(f"agent rejected the request: {frame.header.get('error')}")
        if frame.kind is not Kind.REPLY or len(frame.blobs) != 2:
            raise AgentProtocolError(f"expected a reply frame, got {frame.kind.name}")
        h = frame.header
        try:
            return cls(
                stdout=frame.blobs[0], stderr=frame.blobs[1],
                exit_code=_opt_int(h.get("exit_code")), signal=_opt_int(h.get("signal")),
                error=h.get("error") if isinstance(h.get("error"), str) else None,
                timed_out=bool(h.get("timed_out")),
                stdout_truncated=bool(h.get("stdout_truncated")),
                stderr_truncated=bool(h.get("stderr_truncated")),
                duration_ms=float(h.get("duration_ms", 0.0)),
            )
        except (TypeError, ValueError) as exc:
            raise AgentProtocolError("reply header has fields of the wrong type") from exc


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int):
        raise TypeError("expected an integer")
    return value
