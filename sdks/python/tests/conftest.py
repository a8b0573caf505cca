"""Real `allot serve` processes for the suite (the binary in ALLOT_BIN, which the Rust test
`crates/allot-cli/tests/it/python_sdk.rs` sets to this build's)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest

ADMIN = "python-sdk-suite-admin-key-000000000001"

CONFIG = """
units:
  user: {attribute: user_id}
surfaces: [home, search, signup, extra]
experiments:
  banner:
    unit: user
    surfaces: [home]
    share: 100%
    variants:
      control: {weight: 1, value: false}
      treatment: {weight: 1, value: true}
    state: running
  half:
    unit: user
    surfaces: [search]
    share: 50%
    variants: {a: 1, b: 1}
    state: running
  onboarding:
    unit: user
    surfaces: [signup]
    share: 100%
    variants: {control: 1, treatment: 1}
    sticky: true
    state: running
"""

FRESH = CONFIG + """
  fresh:
    unit: user
    surfaces: [extra]
    share: 100%
    variants: {x: 1}
    state: running
"""


class Serve:
    """One `allot serve` on a free loopback port, with its own directory and SQLite store."""

    def __init__(self, config: str = CONFIG, tls_dir: Optional[str] = None) -> None:
        """`tls_dir`: serve HTTPS with its server.pem and server.key (a certificate for localhost)."""
        self.dir = tempfile.mkdtemp(prefix="allot-py-sdk-")
        pathlib.Path(self.dir, "allot.yaml").write_text(config)
        env = {k: v for k, v in os.environ.items() if k not in ("ALLOT_CONFIG", "ALLOT_DATABASE_URL")}
        env["ALLOT_BOOTSTRAP_ADMIN_KEY"] = ADMIN
        self.proc = subprocess.Popen(
            [os.environ["ALLOT_BIN"], "serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--config", "allot.yaml"]
            + ([] if tls_dir is None else ["--tls-cert", os.path.join(tls_dir, "server.pem"), "--tls-key", os.path.join(tls_dir, "server.key")]),
            cwd=self.dir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        self.addr: Optional[str] = None
        for line in self.proc.stderr:
            try:
                v = json.loads(line)
            except ValueError:
                continue
            addr = v.get("fields", {}).get("addr")
            if addr:
                self.addr = addr
                break
        assert self.addr, "allot serve exited before serving"
        # Keep reading its log so that it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stderr or []], daemon=True).start()
        port = self.addr.rsplit(":", 1)[1]
        self.url = f"http://{self.addr}" if tls_dir is None else f"https://localhost:{port}"

    def call(self, method: str, path: str, body: Any = None, key: str = ADMIN, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Any]:
        data = None
        h = {"Authorization": f"Bearer {key}"}
        if body is not None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            if not isinstance(body, str):
                h["Content-Type"] = "application/json"
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            text = e.read()
            return e.code, json.loads(text) if text else None

    def key(self, role: str) -> str:
        st, b = self.call("POST", "/api/v1/keys", {"name": f"{role}-key", "role": role})
        assert st == 201, b
        return str(b["secret"])

    def put_config(self, yaml: str) -> int:
        st, b = self.call("PUT", "/api/v1/config", yaml, headers={"If-Match": "*"})
        assert st == 200, b
        return int(b["version"])

    def exposures(self) -> list[Tuple[str, str, str]]:
        st, b = self.call("GET", "/api/v1/exposures")
        assert st == 200, b
        return sorted((x["unit"], x["experiment"], x["variant"]) for x in b["exposures"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def serve() -> Iterator[Serve]:
    s = Serve()
    yield s
    s.stop()


@pytest.fixture
def evaluator(serve: Serve) -> str:
    return serve.key("evaluator")


@pytest.fixture
def spec() -> pathlib.Path:
    return pathlib.Path(os.environ.get("ALLOT_SPEC_DIR", pathlib.Path(__file__).parents[3] / "spec"))
