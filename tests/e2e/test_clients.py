"""The official SDK clients, one per era, through mcpgate to real MCP servers."""

from __future__ import annotations

import json
import subprocess

import anyio
from mcp import Client

from harness import E2E


async def all_pages(fetch, member: str) -> tuple[list, int]:
    items, cursor, pages = [], None, 0
    while True:
        page = await fetch(cursor=cursor, cache_mode="refresh")
        items.extend(getattr(page, member))
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            return items, pages


def test_python_sdk_modern_client(gateway):
    async def run():
        async with Client(gateway.url) as client:
            assert client.protocol_version == "2026-07-28"
            tools, pages = await all_pages(client.list_tools, "tools")
            names = [t.name for t in tools]
            assert pages > 1, "the merged list is paged"
            assert len(names) == len(set(names))
            for expected in ("time__get_current_time", "time__convert_time", "everything__get-sum",
                             "everything__echo", "memory__read_graph", "memory__create_entities"):
                assert expected in names
            assert not any(n.startswith("ghost__") for n in names)
            assert names == sorted(names), "deterministic order"

            prompts, _ = await all_pages(client.list_prompts, "prompts")
            assert "everything__simple-prompt" in [p.name for p in prompts]
            resources, _ = await all_pages(client.list_resources, "resources")
            uris = [str(r.uri) for r in resources]
            assert "memory+memory://knowledge-graph" in uris or any(u.startswith("everything+demo://") for u in uris)
            assert all(u.split("+", 1)[0] in ("everything", "memory", "time") for u in uris)
            templates, _ = await all_pages(client.list_resource_templates, "resource_templates")
            assert "everything+demo://resource/dynamic/text/{resourceId}" in [t.uri_template for t in templates]

            now = await client.call_tool("time__get_current_time", {"timezone": "Europe/Lisbon"})
            assert not now.is_error
            assert now.structured_content["timezone"] == "Europe/Lisbon"
            converted = await client.call_tool("time__convert_time", {
                "source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"})
            assert not converted.is_error
            assert "Asia/Tokyo" in json.dumps(converted.structured_content)
            total = await client.call_tool("everything__get-sum", {"a": 40, "b": 2})
            assert "42" in total.content[0].text
            await client.call_tool("memory__create_entities", {"entities": [
                {"name": "mcpgate-py", "entityType": "test", "observations": ["modern client"]}]})
            graph = await client.call_tool("memory__read_graph", {})
            assert "mcpgate-py" in graph.content[0].text

            read = await client.read_resource("everything+demo://resource/dynamic/text/3")
            assert str(read.contents[0].uri) == "everything+demo://resource/dynamic/text/3"
            assert "Resource 3" in read.contents[0].text
            prompt = await client.get_prompt("everything__args-prompt", {"city": "Porto"})
            assert "Porto" in json.dumps(prompt.model_dump(mode="json"))

    anyio.run(run)


def test_typescript_sdk_legacy_client(gateway):
    done = subprocess.run(["node", str(E2E / "ts_client.mjs"), gateway.url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["sessionId"] is True
    assert seen["toolPages"] > 1


def test_python_sdk_answers_a_legacy_upstreams_requests_through_mrtr(gateway):
    """server-everything (legacy) asks mid-call; the gateway turns its requests into
    InputRequiredResults for the modern Python client, and relays progress as it happens."""
    import mcp.types as types

    asked = []

    async def elicit(context, params):
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Grace Hopper", "check": True})

    async def sample(context, params):
        return types.CreateMessageResult(role="assistant", model="gateway-test-model",
                                         content=types.TextContent(type="text", text="sampled through mcpgate"))

    async def run():
        progress = []

        async def on_progress(value, total, message):
            progress.append(value)

        async with Client(gateway.url, elicitation_callback=elicit, sampling_callback=sample) as client:
            elicited = await client.call_tool("everything__trigger-elicitation-request", {})
            assert asked, "the elicitation reached the client"
            assert "Grace Hopper" in json.dumps([c.model_dump(mode="json") for c in elicited.content])
            sampled = await client.call_tool("everything__trigger-sampling-request", {"prompt": "hi", "maxTokens": 5})
            assert "sampled through mcpgate" in json.dumps([c.model_dump(mode="json") for c in sampled.content])
            done = await client.call_tool("everything__trigger-long-running-operation",
                                          {"duration": 1, "steps": 4}, progress_callback=on_progress)
            assert "completed" in done.content[0].text.lower()
            assert progress == [1, 2, 3, 4]

    anyio.run(run)


def test_typescript_sdk_http_sse_client(gateway):
    """An old client on the 2024-11-05 HTTP+SSE transport, through /sse and /messages."""
    base = gateway.url.rsplit("/mcp", 1)[0] + "/"
    done = subprocess.run(["node", str(E2E / "ts_sse_client.mjs"), base],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1])["tools"] > 20
