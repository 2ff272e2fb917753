"""A secret's whole path through a real ``faas serve``: set over the API, listed by a
deployed function, read inside the sandbox of a sync and an async call on one tier, and
found nowhere it must not be (answers, records, logs, metrics, host process listings)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from pathlib import Path

import httpx

from secrets_support import host_processes_holding


def check_a_secret_end_to_end(url: str, log_path: Path, executor: str,
                              timeout: float = 120) -> str:
    """Run the whole path on ``executor``; returns the secret's value (for more greps)."""
    value = "s3cr3t-" + secrets.token_hex(16)
    name = f"sec-{executor}"
    with httpx.Client(base_url=url, timeout=timeout) as c:
        r = c.put("/secrets/db_password", json={"value": value})
        assert r.status_code in (200, 201), r.text
        assert value not in r.text
        script = ("sha256sum /run/secrets/db_password | cut -c1-64; "
                  "stat -c '%a' /run/secrets/db_password; env; sleep 1")
        spec = {"command": ["sh", "-c", script], "secrets": ["db_password"],
                "executor": executor, "timeout_s": 60}
        r = c.put(f"/functions/{name}", json=spec)
        assert r.status_code == 201, r.text

        seen_on_host: list[str] = []
        scanning = threading.Event()

        def scan() -> None:
            while not scanning.is_set():
                seen_on_host.extend(host_processes_holding(value.encode()))
                time.sleep(0.05)

        scanner = threading.Thread(target=scan)
        scanner.start()
        try:
            sync = c.post(f"/functions/{name}/invoke", json={})
            queued = c.post(f"/functions/{name}/invoke", json={},
                            headers={"prefer": "respond-async"})
            assert queued.status_code == 202, queued.text
            invocation = queued.json()["invocation_id"]
            deadline = time.monotonic() + timeout
            while True:
                record = c.get(f"/invocations/{invocation}", params={"wait": 10})
                if record.json()["status"] not in ("queued", "running"):
                    break
                assert time.monotonic() < deadline, record.text
        finally:
            scanning.set()
            scanner.join()
        assert not seen_on_host, seen_on_host
        digest = hashlib.sha256(value.encode()).hexdigest()
        for answer in (sync.json(), record.json()):
            lines = answer["stdout"].splitlines()
            assert lines[:2] == [digest, "400"], answer
            assert value not in answer["stdout"], "the value reached the environment"
        # Nowhere else: not in records, lists, metrics, the function's spec or the log.
        texts = [sync.text, record.text, c.get("/invocations").text,
                 c.get(f"/functions/{name}").text, c.get("/secrets").text,
                 c.get("/secrets/db_password").text, c.get("/metrics").text,
                 log_path.read_text(errors="replace")]
        for text in texts:
            assert value not in text
        # A function listing a secret its tenant never set fails clearly, naming it.
        spec["secrets"] = ["never_set"]
        assert c.put(f"/functions/{name}-missing", json=spec).status_code == 201
        r = c.post(f"/functions/{name}-missing/invoke", json={})
        assert r.status_code == 404 and "never_set" in r.json()["error"], r.text
    return value
