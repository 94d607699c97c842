"""Traffic control as real clients and servers see it. Rate limits through the official Python
SDK: a call over the limit surfaces as an error the SDK reports (HTTP 429, `Retry-After`,
JSON-RPC -32000 naming the limit), not a hang or a crash; after the wait the next call
succeeds; another principal is never held back; both eras. Timeouts, bulkhead and breaker in
front of the real server-everything, killed and restarted."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.request

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from harness import VENV_BIN, start_everything, start_gateway, stop

RESOURCE = "https://mcp.e2e.test/mcp"


@pytest.fixture
def limited(tmp_path):
    digest = lambda key: hashlib.sha256(key.encode()).hexdigest()  # noqa: E731
    gw = start_gateway(f"""
listen: {{ addr: 127.0.0.1:0, public_url: {RESOURCE} }}
limits: {{ per_principal: {{ rate: 60/m, burst: 2 }} }}
upstreams:
  - id: time
    stdio: {{ command: "{VENV_BIN / 'mcp-server-time'}", args: ["--local-timezone", "UTC"] }}
auth:
  api_keys:
    - {{ name: alice, sha256: "{digest('alice-key')}" }}
    - {{ name: bob, sha256: "{digest('bob-key')}" }}
""", tmp_path)
    yield gw
    stop(gw.proc)


def client(url: str, key: str, mode: str, seen: list) -> Client:
    """The SDK client sending API key `key`; every HTTP answer recorded in `seen` as (status,
    Retry-After)."""

    async def record(response):
        seen.append((response.status_code, response.headers.get("retry-after")))

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30,
                              event_hooks={"response": [record]})
    return Client(streamable_http_client(url, http_client=http), mode=mode)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_rate_limited_call_is_an_error_the_sdk_reports_then_the_wait_is_enough(limited, mode):
    async def run():
        seen: list = []
        async with client(limited.url, "alice-key", mode, seen) as alice, \
                client(limited.url, "bob-key", mode, []) as bob:
            # The burst of 2; the legacy handshake (initialize) is not a call and costs nothing.
            for _ in range(2):
                ok = await alice.call_tool("get_current_time", {"timezone": "UTC"})
                assert not ok.is_error
            started = time.monotonic()
            with pytest.raises(Exception) as raised:
                await alice.call_tool("get_current_time", {"timezone": "UTC"})
            assert time.monotonic() - started < 5, "refused at once, not queued"
            error = getattr(raised.value, "error", None)
            assert error is not None, repr(raised.value)
            assert error.code == -32000
            assert error.data["reason"] == "rate_limited"
            assert error.data["limit"] == "per_principal"
            wait_ms = error.data["retry_after_ms"]
            assert 0 < wait_ms <= 1000
            assert (429, "1") in seen, seen
            # Bob is his own principal: untouched.
            other = await bob.call_tool("get_current_time", {"timezone": "Europe/Lisbon"})
            assert other.structured_content["timezone"] == "Europe/Lisbon"
            # After Retry-After, the next call goes through on the same connection.
            await anyio.sleep(wait_ms / 1000)
            again = await alice.call_tool("get_current_time", {"timezone": "Asia/Tokyo"})
            assert again.structured_content["timezone"] == "Asia/Tokyo"

    anyio.run(run)


def test_against_real_servers_timeouts_follow_progress_and_the_breaker_recovers_through_health_checks(tmp_path):
    """server-everything behind a breaker, a bulkhead and a tool timeout: progress keeps a long
    operation alive past its timeout, silence does not; with the server killed the circuit
    opens while the other upstream serves; restarted, the health check's probe closes it."""
    first, port = start_everything(tmp_path / "everything.log")
    servers = [first]
    gw = start_gateway(f"""
listen: {{ addr: 127.0.0.1:0 }}
admin: {{ addr: 127.0.0.1:0 }}
upstreams:
  - id: time
    stdio: {{ command: "{VENV_BIN / 'mcp-server-time'}", args: ["--local-timezone", "UTC"] }}
  - id: everything
    http: {{ url: "http://127.0.0.1:{port}/mcp" }}
    timeout: 5s
    max_timeout: 20s
    max_concurrency: 1
    circuit_breaker: {{ consecutive_failures: 2, open_for: 1h }}
    health_check: {{ interval: 1s }}
    tools:
      "trigger-long-running-operation": {{ timeout: 1500ms }}
""", tmp_path)

    def everything_state():
        with urllib.request.urlopen(gw.admin + "/readyz") as r:
            return json.loads(r.read())["upstreams"]["everything"]

    async def run():
        async with Client(gw.url) as c:
            ticks = []

            async def progress(value, total, message):
                ticks.append(value)

            long = "everything__trigger-long-running-operation"
            # Six seconds, a progress notification each second: past the 1.5 s timeout.
            done = await c.call_tool(long, {"duration": 6, "steps": 6}, progress_callback=progress)
            assert not done.is_error and len(ticks) == 6
            with pytest.raises(Exception) as silent:
                await c.call_tool(long, {"duration": 4, "steps": 1}, progress_callback=progress)
            assert silent.value.error.data["reason"] == "timeout"
            # max_concurrency 1: a second call while one runs is refused at once.
            running = asyncio.create_task(
                c.call_tool(long, {"duration": 2, "steps": 2}, progress_callback=progress))
            await anyio.sleep(0.5)
            with pytest.raises(Exception) as busy:
                await c.call_tool("everything__echo", {"message": "x"})
            assert busy.value.error.data["reason"] == "overloaded"
            await running

            servers[0].kill()
            servers[0].wait()
            reasons = []
            for _ in range(3):
                with pytest.raises(Exception) as down:
                    await c.call_tool("everything__echo", {"message": "x"})
                reasons.append(down.value.error.data["reason"])
            assert reasons == ["unavailable", "unavailable", "circuit_open"]
            now = await c.call_tool("time__get_current_time", {"timezone": "UTC"})
            assert now.structured_content["timezone"] == "UTC"
            assert everything_state()["circuit"] == "open"

            # open_for is an hour: only the health check's probe can close it this soon.
            servers.append(start_everything(tmp_path / "everything.log", port=port)[0])
            deadline = time.monotonic() + 30
            while everything_state()["circuit"] != "closed":
                assert time.monotonic() < deadline, everything_state()
                await anyio.sleep(0.2)
            assert everything_state()["health"]["healthy"] is True
            echo = await c.call_tool("everything__echo", {"message": "back"})
            assert "back" in echo.content[0].text

    try:
        anyio.run(run)
    finally:
        stop(gw.proc)
        for proc in servers:
            stop(proc)
