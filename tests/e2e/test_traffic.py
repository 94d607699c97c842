"""Rate limits as the official Python SDK sees them: a call over the limit surfaces as an error
the SDK reports (HTTP 429, `Retry-After`, JSON-RPC -32000 naming the limit), not a hang or a
crash; after the wait the next call succeeds; another principal is never held back. Both eras."""

from __future__ import annotations

import hashlib
import time

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from harness import VENV_BIN, start_gateway, stop

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
