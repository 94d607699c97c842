"""Starting real MCP servers and mcpgate for the end-to-end tests.

Everything binds 127.0.0.1; every process started here is stopped by the fixture that started it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
E2E = ROOT / "tests" / "e2e"
VENV_BIN = ROOT / ".e2e" / "venv" / "bin"
NODE_BIN = E2E / "node_modules" / ".bin"
GATEWAY = Path(os.environ.get("MCPGATE_BIN", ROOT / "target" / "debug" / "mcpgate"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {port} within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_everything(log: Path, transport: str = "streamableHttp",
                     port: int | None = None) -> tuple[subprocess.Popen, int]:
    """@modelcontextprotocol/server-everything on `port` (a free one by default): Streamable
    HTTP, or `sse` for the 2024-11-05 HTTP+SSE transport. The log is appended to."""
    port = port or free_port()
    env = dict(os.environ, PORT=str(port))
    proc = subprocess.Popen(
        [str(NODE_BIN / "mcp-server-everything"), transport],
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, proc)
    return proc, port


@dataclass
class Gateway:
    proc: subprocess.Popen
    url: str
    host: str
    port: int
    admin: str | None


def start_gateway(config_text: str, workdir: Path, binary: Path = GATEWAY) -> Gateway:
    """Starts mcpgate on `config_text`. Unless it sets `shutdown:`, stopping it skips the drain
    delay (no load balancer watches a test's gateway; test_shutdown.py drives the drain)."""
    if not re.search(r"^shutdown:", config_text, re.MULTILINE):
        config_text += "\nshutdown: { drain_delay: 0s }\n"
    config = workdir / "mcpgate.yaml"
    config.write_text(config_text)
    log = (workdir / "mcpgate.log").open("w")
    proc = subprocess.Popen(
        [str(binary), "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info")),
    )
    deadline = time.monotonic() + 120
    url = admin = None
    assert proc.stdout is not None
    while time.monotonic() < deadline and url is None:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"mcpgate exited ({proc.wait()}); see {workdir / 'mcpgate.log'}")
        if m := re.search(r"listening on (https?://\S+)", line):
            url = m.group(1)
    if url is None:
        stop(proc)
        raise TimeoutError("mcpgate did not start")
    if "admin:" in config_text:
        m = re.search(r"operations on (http://\S+)/metrics", proc.stdout.readline())
        admin = m.group(1) if m else None
    host, port = re.match(r"https?://([^:/]+):(\d+)/", url).groups()
    return Gateway(proc, url, host, int(port), admin)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict | None
    raw: bytes


def post(gw: Gateway, body: bytes | dict, headers: dict[str, str] | None = None) -> Answer:
    """One raw POST to the MCP endpoint."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    h.update(headers or {})
    return request(gw, "POST", data, h)


def request(gw: Gateway, method: str, data: bytes | None, headers: dict[str, str]) -> Answer:
    conn = http.client.HTTPConnection(gw.host, gw.port, timeout=60)
    try:
        conn.request(method, "/mcp", body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        body = json.loads(raw) if raw.strip() else None
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body, raw)
    finally:
        conn.close()


MODERN = "2026-07-28"


def modern_body(method: str, params: dict | None = None, id: int | str = 1) -> dict:
    p = dict(params or {})
    p["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-e2e", "version": "0"},
    }
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": p}


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    h = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if name is not None:
        h["Mcp-Name"] = name
    return h


def legacy_session(gw: Gateway, version: str = "2025-11-25") -> str:
    """Runs the legacy handshake with raw requests; returns the session id."""
    init = post(gw, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw-e2e", "version": "0"}}})
    assert init.status == 200, init.raw
    sid = init.headers["mcp-session-id"]
    note = post(gw, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"Mcp-Session-Id": sid, "MCP-Protocol-Version": version})
    assert note.status == 202
    return sid
