"""mcpgate in front of a server built on the official Python SDK (tests/e2e/servers/sdk_server.py),
over Streamable HTTP and stdio, with the official Python SDK client in each era; what works
talking to the server directly works through the gateway:

- the server changes its own lists during a call and announces it: a modern client listening
  through mcpgate hears of it within a second;
- the server is dual-era: a legacy client through mcpgate gets a legacy session from it, so the
  server's elicitation and sampling requests from a tool reach the client.
"""

from __future__ import annotations

import subprocess
import time

import anyio
import pytest
from mcp import Client
from mcp.types import CreateMessageResult, ElicitResult, TextContent

from harness import E2E, VENV_BIN, free_port, start_gateway, stop, wait_for_port

SERVER = E2E / "servers" / "sdk_server.py"


@pytest.fixture(scope="module")
def mutating(tmp_path_factory):
    """The SDK server over HTTP, and mcpgate in front of it (HTTP) and of a stdio copy."""
    workdir = tmp_path_factory.mktemp("mutating")
    port = free_port()
    server = subprocess.Popen([str(VENV_BIN / "python"), str(SERVER), str(port)],
                              stdout=(workdir / "server.log").open("w"), stderr=subprocess.STDOUT)
    wait_for_port(port, server)
    gw = start_gateway(f"""
listen: {{ addr: 127.0.0.1:0 }}
upstreams:
  - id: web
    http: {{ url: "http://127.0.0.1:{port}/mcp" }}
  - id: pipe
    stdio: {{ command: "{VENV_BIN / 'python'}", args: ["{SERVER}"] }}
""", workdir)
    yield f"http://127.0.0.1:{port}/mcp", gw
    stop(gw.proc)
    stop(server)


async def heard_within(url: str, tool: str, seconds: float) -> tuple[str, float]:
    """Listens at `url`, calls `tool`, and returns the first change event and when it came."""
    async with Client(url) as client:
        async with client.listen(tools_list_changed=True, prompts_list_changed=True) as sub:
            started = time.monotonic()
            heard: list[tuple[str, float]] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.call_tool, tool, {})
                with anyio.move_on_after(seconds):
                    async for event in sub:
                        heard.append((type(event).__name__, time.monotonic() - started))
                        break
            assert heard, f"no list change within {seconds}s of calling {tool} at {url}"
            return heard[0]


@pytest.mark.parametrize("tool,event", [
    ("grow_tools_slowly", "ToolsListChanged"),
    ("grow_prompts", "PromptsListChanged"),
])
def test_list_changes_arrive_through_the_gateway_as_they_do_directly(mutating, tool, event):
    direct, gw = mutating

    async def run():
        kind, _ = await heard_within(direct, tool, 1.0)
        assert kind == event, "the server itself announces the change"
        for upstream in ("web", "pipe"):
            kind, after = await heard_within(gw.url, f"{upstream}__{tool}", 1.0)
            assert kind == event
            assert after < 1.0, f"{upstream}: {after:.2f}s"

    anyio.run(run)


async def legacy_call(url: str, tool: str) -> str:
    """Calls `tool` as a legacy (2025-11-25) client that answers elicitation and sampling."""

    async def elicit(context, params):
        return ElicitResult(action="accept", content={"name": "Ada"})

    async def sample(context, params):
        return CreateMessageResult(role="assistant", content=TextContent(type="text", text="4"), model="test")

    async with Client(url, mode="legacy", elicitation_callback=elicit, sampling_callback=sample) as client:
        assert client.protocol_version != "2026-07-28"
        result = await client.call_tool(tool, {})
        assert not result.is_error, result
        return result.content[0].text


@pytest.mark.parametrize("tool,answer", [
    ("ask_name", "hello Ada"),
    ("ask_model", "the model said 4"),
    ("ask_model_unattached", "the model said 4"),
])
def test_a_legacy_client_is_served_in_its_own_era_by_a_dual_era_server(mutating, tool, answer):
    direct, gw = mutating

    async def run():
        assert await legacy_call(direct, tool) == answer
        for upstream in ("web", "pipe"):
            assert await legacy_call(gw.url, f"{upstream}__{tool}") == answer, upstream

    anyio.run(run)
