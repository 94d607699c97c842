"""A stdio MCP server for mcpgate's integration tests (standard library only).

Usage: python3 mock_stdio.py legacy|modern
Tools: echo (returns its message and the pid), crash (exits the process at once), grow (adds a
tool named `grown` and sends notifications/tools/list_changed).
"""

import json
import os
import sys

ERA = sys.argv[1] if len(sys.argv) > 1 else "legacy"
tools = [
    {"name": "echo", "inputSchema": {"type": "object"}},
    {"name": "crash", "inputSchema": {"type": "object"}},
    {"name": "grow", "inputSchema": {"type": "object"}},
]


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def result(rid, res):
    if ERA == "modern":
        res.setdefault("resultType", "complete")
    send({"jsonrpc": "2.0", "id": rid, "result": res})


def error(rid, code, message):
    send({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})


for line in sys.stdin:
    if not line.strip():
        continue
    msg = json.loads(line)
    method, rid, params = msg.get("method"), msg.get("id"), msg.get("params") or {}
    if rid is None:
        continue
    if method == "server/discover":
        if ERA == "modern":
            result(rid, {"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {"listChanged": True}},
                         "ttlMs": 0, "cacheScope": "public", "instructions": "Modern stdio mock."})
        else:
            error(rid, -32601, "Method not found")
    elif method == "initialize":
        if ERA == "modern":
            error(rid, -32601, "Method not found")
        else:
            result(rid, {"protocolVersion": params.get("protocolVersion", "2025-11-25"),
                         "capabilities": {"tools": {"listChanged": True}},
                         "serverInfo": {"name": "mock-stdio", "version": "1"}})
    elif method == "tools/list":
        result(rid, {"tools": tools})
    elif method == "tools/call":
        name = params.get("name")
        if name == "echo":
            meta = params.get("_meta") or {}
            result(rid, {"content": [{"type": "text", "text": str(params.get("arguments", {}).get("message"))}],
                         "structuredContent": {"pid": os.getpid(), "meta": meta}})
        elif name == "crash":
            os._exit(3)
        elif name == "grow":
            if not any(t["name"] == "grown" for t in tools):
                tools.append({"name": "grown", "inputSchema": {"type": "object"}})
            result(rid, {"content": [{"type": "text", "text": "grown"}]})
            send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        else:
            error(rid, -32602, f"Unknown tool: {name}")
    else:
        error(rid, -32601, "Method not found")
