"""A small synchronous client of the functions API (docs/design.md, "The HTTP contract").

Every method returns the decoded JSON of a success, or raises: ``ApiError``
when the server answered an error status (with its ``error`` and
``problems``), ``ServerUnreachable`` when nothing answered at the URL in
time. ``invoke`` is the exception: a 504 (the deadline passed) still carries
the partial result, so it returns the status with the body.

Asynchronous calls (``invoke_async``) answer 202 at once with an invocation
id; ``invocation`` reads its record (long-polling with ``wait_s``),
``invocations`` lists records a page at a time, ``cancel_invocation`` stops
one that has not finished (409, an ``ApiError``, once it has).

Timeouts are bounded everywhere: connecting takes at most ``CONNECT_TIMEOUT_S``;
reading an answer ``REQUEST_TIMEOUT_S``, or for an invocation its deadline
plus ``INVOKE_GRACE_S`` (the server's maximum when the call names none), or
for a long poll its ``wait_s`` plus ``REQUEST_TIMEOUT_S``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from faas.errors import ApiError, ServerUnreachable

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 60.0
UPLOAD_TIMEOUT_S = 300.0
#: Used when an invocation names no deadline: the server's largest default maximum.
DEFAULT_INVOKE_TIMEOUT_S = 300.0
INVOKE_GRACE_S = 30.0


class FaasClient:
    """The functions API at ``base_url`` as ``api_key`` (None: a server running open);
    ``transport`` replaces the network (tests)."""

    def __init__(self, base_url: str, *, transport: httpx.BaseTransport | None = None,
                 api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, transport=transport,
            headers={"authorization": f"Bearer {api_key}"} if api_key else None,
            timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))

    def __enter__(self) -> FaasClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- functions -------------------------------------------------------------------

    def deploy(self, name: str, spec: Mapping[str, Any], bundle: bytes | None = None
               ) -> dict[str, Any]:
        """``PUT /functions/{name}``: a new version (JSON, or multipart with the bundle)."""
        path = _function_path(name)
        if bundle is None:
            return self._json("PUT", path, json=dict(spec))
        files = {"spec": (None, json.dumps(dict(spec)), "application/json"),
                 "bundle": ("bundle.tar.gz", bundle, "application/gzip")}
        return self._json("PUT", path, files=files, timeout=UPLOAD_TIMEOUT_S)

    def list_functions(self, labels: Mapping[str, str] | None = None,
                       page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every deployed function's summary, following ``next_cursor`` page by page."""
        params: list[tuple[str, str | int]] = [("label", f"{k}={v}")
                                               for k, v in (labels or {}).items()]
        params.append(("limit", page_size))
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = self._json("GET", "/functions",
                              params=params + ([("cursor", cursor)] if cursor else []))
            yield from page.get("items", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return
            if cursor in seen:  # a server that loops must not make us loop forever
                raise ApiError(f"the server repeated the list cursor {cursor[:40]!r}")
            seen.add(cursor)

    def get_function(self, name: str) -> dict[str, Any]:
        return self._json("GET", _function_path(name))

    def get_version(self, name: str, version: int) -> dict[str, Any]:
        return self._json("GET", f"{_function_path(name)}/versions/{version}")

    def delete_function(self, name: str) -> None:
        self._request("DELETE", _function_path(name))

    def invoke(self, name: str, body: Mapping[str, Any], *, version: int | None = None,
               timeout_s: float | None = None) -> tuple[int, dict[str, Any]]:
        """``POST /functions/{name}/invoke``: (status, result) for a 200 or a 504."""
        params = {"version": version} if version is not None else None
        read = (timeout_s or DEFAULT_INVOKE_TIMEOUT_S) + INVOKE_GRACE_S
        response = self._send("POST", f"{_function_path(name)}/invoke", json=dict(body),
                              params=params, timeout=read)
        if response.status_code in (200, 504):
            data = _decode(response)
            if data is not None:
                return response.status_code, data
        raise _api_error(response)

    # -- invocation records ----------------------------------------------------------

    def invoke_async(self, function_id: str, body: Mapping[str, Any], *,
                     version: int | None = None, callback_url: str | None = None,
                     idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST /functions/{id}/invoke`` with ``Prefer: respond-async``: the 202 body,
        ``{"invocation_id": ..., "status": "queued"}``."""
        headers = {"Prefer": "respond-async"}
        if callback_url is not None:
            headers["X-Callback-Url"] = callback_url
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        params = {"version": version} if version is not None else None
        response = self._request("POST", f"{_function_path(function_id)}/invoke",
                                 json=dict(body), params=params, headers=headers)
        data = _decode(response)
        if response.status_code != 202 or data is None:
            # A 200 here is a server without asynchronous calls that ran it synchronously.
            raise ApiError(f"expected 202 Accepted with a JSON body to an asynchronous call, "
                           f"got HTTP {response.status_code}", response.status_code)
        return data

    def invocation(self, invocation_id: str, *, wait_s: float | None = None
                   ) -> dict[str, Any]:
        """``GET /invocations/{id}``: its record; with ``wait_s``, once it is final or
        ``wait_s`` seconds passed (the server allows 0 to 60)."""
        if wait_s is None:
            return self._json("GET", _invocation_path(invocation_id))
        return self._json("GET", _invocation_path(invocation_id),
                          params={"wait": f"{wait_s:g}"}, timeout=wait_s + REQUEST_TIMEOUT_S)

    def invocations(self, *, function: str | None = None, status: str | None = None,
                    since: str | None = None, limit: int | None = None,
                    cursor: str | None = None) -> dict[str, Any]:
        """``GET /invocations``: one page, ``{"items": [summary, ...], "next_cursor": ...}``,
        newest first."""
        given = {"function": function, "status": status, "since": since, "limit": limit,
                 "cursor": cursor}
        return self._json("GET", "/invocations",
                          params={k: v for k, v in given.items() if v is not None})

    def cancel_invocation(self, invocation_id: str) -> dict[str, Any]:
        """``DELETE /invocations/{id}``: the record, now ``cancelled``."""
        return self._json("DELETE", _invocation_path(invocation_id))

    # -- plumbing --------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, **kwargs)
        data = _decode(response)
        if data is None:
            raise ApiError(f"HTTP {response.status_code} with a body that is not a JSON object",
                           response.status_code)
        return data

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._send(method, path, **kwargs)
        if not response.is_success:
            raise _api_error(response)
        return response

    def _send(self, method: str, path: str, *, timeout: float | None = None,
              **kwargs: Any) -> httpx.Response:
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S)
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ServerUnreachable(
                f"no faas server at {self.base_url} (set --url or FAAS_URL)") from None
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(
                f"{self.base_url} did not answer in time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"talking to {self.base_url} failed: {exc}") from None


def _function_path(name: str) -> str:
    # Quoted whole: a name with "/" or "?" reaches the server as one (refused) id.
    return f"/functions/{quote(name, safe='')}"


def _invocation_path(invocation_id: str) -> str:
    return f"/invocations/{quote(invocation_id, safe='')}"


def _decode(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _api_error(response: httpx.Response) -> ApiError:
    data = _decode(response) or {}
    error = data.get("error")
    if not isinstance(error, str) or not error:
        text = " ".join(response.text[:200].split())
        error = f"HTTP {response.status_code}" + (f": {text}" if text else "")
    raw = data.get("problems")
    problems = tuple(str(p) for p in raw) if isinstance(raw, list) else ()
    return ApiError(error, response.status_code, problems)
