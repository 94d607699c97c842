"""A tiny MCP client for the demo: lists the merged catalogue and calls one tool on each upstream.

Usage: .e2e/venv/bin/python examples/client.py [http://127.0.0.1:8080/mcp]
"""

import sys

import anyio
from mcp import Client


async def main(url: str) -> None:
    async with Client(url) as client:
        print(f"connected: protocol {client.protocol_version}")
        cursor, tools = None, []
        while True:
            page = await client.list_tools(cursor=cursor)
            tools += page.tools
            cursor = page.next_cursor
            if cursor is None:
                break
        for tool in tools:
            print(f"  {tool.name}")
        now = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
        print("time__get_current_time ->", now.structured_content)
        total = await client.call_tool("everything__get-sum", {"a": 2, "b": 3})
        print("everything__get-sum ->", total.content[0].text)
        graph = await client.call_tool("memory__read_graph", {})
        print("memory__read_graph ->", graph.content[0].text.replace("\n", " "))


anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/mcp")
