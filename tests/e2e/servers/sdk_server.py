"""A server built on the official Python SDK (MCPServer, PyPI `mcp`), dual-era as servers on
the current SDK are (it answers server/discover and initialize).

- Tools that change the server's own lists during a call and announce it: `grow_tools` adds a
  tool, `grow_tools_slowly` too and answers two seconds later, `grow_prompts` adds a prompt.
- Tools that ask the client mid-call, as legacy sessions allow: `ask_name` (elicitation),
  `ask_model` (sampling) and `ask_model_unattached` (sampling not tied to the call).
- A resource `note://board` that sessions may subscribe to (`resources/subscribe`), and a tool
  `touch_board` that changes it and tells every subscribed session, whichever session calls it.

Usage: python sdk_server.py [PORT]   (Streamable HTTP at http://127.0.0.1:PORT/mcp, else stdio)
"""

import sys
import warnings

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp import types
from mcp.types import SamplingMessage, TextContent
from pydantic import BaseModel

server = MCPServer("sdk-server", instructions="Changes its lists and asks its client on request.")
added = {"tools": 0, "prompts": 0, "board": 0}
BOARD = "note://board"
subscribers: dict[str, set] = {}  # URI -> sessions subscribed to it


def add_tool() -> str:
    """Adds one more tool, `extra_<n>`; returns its name."""
    added["tools"] += 1
    n = added["tools"]

    def extra() -> str:
        return f"extra {n}"

    server.add_tool(extra, name=f"extra_{n}")
    return f"extra_{n}"


@server.tool()
async def grow_tools(ctx: Context) -> str:
    """Adds a tool, then announces that the tool list changed."""
    name = add_tool()
    await ctx.notify_tools_changed()
    return f"added {name}"


@server.tool()
async def grow_tools_slowly(ctx: Context) -> str:
    """Adds a tool and announces it, then takes two more seconds to answer."""
    name = add_tool()
    await ctx.notify_tools_changed()
    await anyio.sleep(2)
    return f"added {name}"


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


class Name(BaseModel):
    name: str


@server.tool()
async def ask_name(ctx: Context) -> str:
    """Asks the client for a name (elicitation/create) and greets it."""
    answer = await ctx.elicit("Your name?", Name)
    return f"hello {answer.data.name}" if answer.action == "accept" else f"no name ({answer.action})"


async def sample(ctx: Context, related: bool) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reply = await ctx.session.create_message(
            [SamplingMessage(role="user", content=TextContent(type="text", text="2+2?"))], max_tokens=5,
            related_request_id=ctx.request_id if related else None)
    return f"the model said {reply.content.text}"


@server.tool()
async def ask_model(ctx: Context) -> str:
    """Asks the client's model a question (sampling/createMessage) and returns its answer."""
    return await sample(ctx, related=True)


@server.tool()
async def ask_model_unattached(ctx: Context) -> str:
    """As ask_model, without naming the call the request belongs to: over Streamable HTTP the
    SDK then sends it on the session's standalone (GET) stream."""
    return await sample(ctx, related=False)


@server.resource(BOARD)
def board() -> str:
    """A board; `touch_board` changes it."""
    return f"board version {added['board']}"


async def on_subscribe(ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
    subscribers.setdefault(str(params.uri), set()).add(ctx.session)
    return types.EmptyResult()


async def on_unsubscribe(ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    subscribers.get(str(params.uri), set()).discard(ctx.session)
    return types.EmptyResult()


server._lowlevel_server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, on_subscribe)
server._lowlevel_server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, on_unsubscribe)


@server.tool()
async def touch_board() -> str:
    """Changes the board and sends notifications/resources/updated to every session subscribed."""
    added["board"] += 1
    told = 0
    for session in list(subscribers.get(BOARD, ())):
        try:
            await session.send_resource_updated(BOARD)
            told += 1
        except Exception:  # a session that went away
            subscribers[BOARD].discard(session)
    return f"board version {added['board']}, told {told}"


@server.prompt()
def hello() -> str:
    """A fixed prompt, so the server announces prompts."""
    return "hello"


if __name__ == "__main__":
    if len(sys.argv) > 1:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        server.run()
