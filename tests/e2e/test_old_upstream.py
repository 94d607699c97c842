"""An upstream on the deprecated 2024-11-05 HTTP+SSE transport (server-everything's `sse` mode)
behind mcpgate, used by the modern Python SDK client: catalogue, calls, and its elicitation
bridged to the client as MRTR."""

from __future__ import annotations

import json

import anyio
import mcp.types as types
import pytest
from mcp import Client

from harness import start_everything, start_gateway, stop


@pytest.fixture
def old_gateway(tmp_path):
    proc, port = start_everything(tmp_path / "everything-sse.log", "sse")
    gw = start_gateway(f"""
listen: {{ addr: 127.0.0.1:0 }}
upstreams:
  - id: old
    sse: {{ url: "http://127.0.0.1:{port}/sse" }}
namespacing: {{ prefix: always }}
""", tmp_path)
    yield gw
    stop(gw.proc)
    stop(proc)


def test_modern_client_through_an_http_sse_upstream(old_gateway):
    async def elicit(context, params):
        return types.ElicitResult(action="accept", content={"name": "Via SSE", "check": True})

    async def run():
        async with Client(old_gateway.url, elicitation_callback=elicit) as client:
            names, cursor = [], None
            while True:
                page = await client.list_tools(cursor=cursor)
                names += [t.name for t in page.tools]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert "old__echo" in names and "old__get-sum" in names
            echoed = await client.call_tool("old__echo", {"message": "over sse"})
            assert "over sse" in echoed.content[0].text
            total = await client.call_tool("old__get-sum", {"a": 20, "b": 22})
            assert "42" in total.content[0].text
            elicited = await client.call_tool("old__trigger-elicitation-request", {})
            assert "Via SSE" in json.dumps([c.model_dump(mode="json") for c in elicited.content])

    anyio.run(run)
