"""A server built on the official Python SDK (MCPServer, PyPI `mcp`) whose tools change its
own lists during a call and announce it, as SDK servers do: `grow_tools` adds a tool,
`grow_prompts` adds a prompt, each followed by the SDK's list-changed notification.

Usage: python mutating.py [PORT]   (Streamable HTTP at http://127.0.0.1:PORT/mcp, else stdio;
both eras)
"""

import sys

import anyio

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("mutating", instructions="Changes its lists on request.")
added = {"tools": 0, "prompts": 0}


@server.tool()
async def grow_tools(ctx: Context) -> str:
    """Adds a tool, then announces that the tool list changed."""
    added["tools"] += 1
    n = added["tools"]

    def extra() -> str:
        return f"extra {n}"

    server.add_tool(extra, name=f"extra_{n}")
    await ctx.notify_tools_changed()
    return f"added extra_{n}"


@server.tool()
async def grow_tools_slowly(ctx: Context) -> str:
    """Adds a tool and announces it, then takes two more seconds to answer."""
    added["tools"] += 1
    n = added["tools"]

    def extra() -> str:
        return f"extra {n}"

    server.add_tool(extra, name=f"extra_{n}")
    await ctx.notify_tools_changed()
    await anyio.sleep(2)
    return f"added extra_{n}"


@server.tool()
async def grow_prompts(ctx: Context) -> str:
    """Adds a prompt, then announces that the prompt list changed."""
    added["prompts"] += 1
    n = added["prompts"]

    def prompt() -> str:
        return f"prompt {n}"

    server.prompt(name=f"prompt_{n}")(prompt)
    await ctx.notify_prompts_changed()
    return f"added prompt_{n}"


@server.prompt()
def hello() -> str:
    """A fixed prompt, so the server announces prompts."""
    return "hello"


if __name__ == "__main__":
    if len(sys.argv) > 1:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        server.run()
