"""A stdio MCP server for mcpgate's integration tests (standard library only).

Usage: python3 mock_stdio.py legacy|modern [tasks]
Tools: echo (returns its message and the pid), crash (exits the process at once), grow (adds a
tool named `grown` and sends notifications/tools/list_changed), progress (three progress
notifications, then a result), ask (asks the client elicitation/create and returns the answer, `then_ms` later),
ask_two (asks elicitation/create and roots/list at once, answers with both answers), slow
(answers only when cancelled: never), cancellations (the request ids it saw cancelled),
touch (sends notifications/resources/updated for mock://r1), subscribed (the URIs subscribed to
now, after every resources/subscribe and resources/unsubscribe), big (a text of `size` bytes),
bigstream (a progress notification, then a text of `size` bytes), grow_slowly (adds a tool
named `grown_slowly`, sends notifications/tools/list_changed, then keeps the process busy for two
seconds before it answers: this server handles one request at a time), spew (writes 1 MiB of stderr in
256 KiB lines that are not UTF-8, then answers), flood (writes a stdout line of 33 MiB, more than
the gateway reads as one message, then answers). Resources: mock://r1, subscribable.
With `tasks` (2025-11-25 tasks): mktask (creates task T<n>: a CreateTaskResult), leak (sends a
notifications/tasks/status and an elicitation/create related to task `taskId`, then answers
with what the elicitation got), and tasks/list, tasks/get.
"""

import json
import os
import sys
import time

ERA = sys.argv[1] if len(sys.argv) > 1 else "legacy"
TASKS = "tasks" in sys.argv[2:]
tools = [{"name": n, "inputSchema": {"type": "object"}}
         for n in ("echo", "crash", "grow", "progress", "ask", "ask_two", "slow", "cancellations", "touch",
                   "spew", "flood", "subscribed", "big", "bigstream", "grow_slowly")]
cancelled = []
CAPS = {"tools": {"listChanged": True}, "resources": {"subscribe": True}}
if TASKS:
    CAPS["tasks"] = {"list": {}, "requests": {"tools": {"call": {}}}}
    tools += [{"name": n, "inputSchema": {"type": "object"}} for n in ("mktask", "leak")]
tasks = {}  # task id -> Task
waiting = {}  # id of our request to the client -> id of the tools/call it belongs to
pause_after = {}  # id of an ask call -> ms to wait after the answer, before the result
gathering = {}  # id of a tools/call asking several at once -> {our request id: answer or None}
subscribed = set()
next_own_id = 1000


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
    if method is None and rid in waiting:
        call_id = waiting.pop(rid)
        answer = msg.get("result") or {"error": msg.get("error")}
        if call_id in gathering:
            gathering[call_id][rid] = answer
            if all(a is not None for a in gathering[call_id].values()):
                answers = gathering.pop(call_id)
                result(call_id, {"content": [{"type": "text", "text": json.dumps(answers[i])}
                                             for i in sorted(answers)]})
            continue
        time.sleep(pause_after.pop(call_id, 0) / 1000)
        result(call_id, {"content": [{"type": "text", "text": json.dumps(answer)}]})
        continue
    if method == "notifications/cancelled":
        cancelled.append(params.get("requestId"))
        continue
    if rid is None:
        continue
    if method == "server/discover":
        if ERA == "modern":
            result(rid, {"supportedVersions": ["2026-07-28"], "capabilities": CAPS,
                         "ttlMs": 0, "cacheScope": "public", "instructions": "Modern stdio mock."})
        else:
            error(rid, -32601, "Method not found")
    elif method == "initialize":
        if ERA == "modern":
            error(rid, -32601, "Method not found")
        else:
            result(rid, {"protocolVersion": params.get("protocolVersion", "2025-11-25"),
                         "capabilities": CAPS,
                         "serverInfo": {"name": "mock-stdio", "version": "1"}})
    elif method == "tools/list":
        result(rid, {"tools": tools})
    elif method == "tasks/list" and TASKS:
        result(rid, {"tasks": list(tasks.values())})
    elif method == "tasks/get" and TASKS:
        task = tasks.get(params.get("taskId"))
        if task is None:
            error(rid, -32602, "Unknown task")
        else:
            result(rid, task)
    elif method == "ping":
        result(rid, {})
    elif method == "resources/list":
        result(rid, {"resources": [{"uri": "mock://r1", "name": "r1"}]})
    elif method == "resources/templates/list":
        result(rid, {"resourceTemplates": []})
    elif method in ("resources/subscribe", "resources/unsubscribe"):
        if method == "resources/subscribe":
            subscribed.add(params.get("uri"))
        else:
            subscribed.discard(params.get("uri"))
        result(rid, {})
    elif method == "tools/call":
        name = params.get("name")
        if name == "echo":
            meta = params.get("_meta") or {}
            result(rid, {"content": [{"type": "text", "text": str(params.get("arguments", {}).get("message"))}],
                         "structuredContent": {"pid": os.getpid(), "meta": meta}})
        elif name == "crash":
            os._exit(3)
        elif name == "progress":
            token = (params.get("_meta") or {}).get("progressToken")
            for i in (1, 2, 3):
                if token is not None:
                    send({"jsonrpc": "2.0", "method": "notifications/progress",
                          "params": {"progressToken": token, "progress": i, "total": 3}})
                send({"jsonrpc": "2.0", "method": "notifications/message",
                      "params": {"level": "info" if i < 3 else "error", "data": f"step {i}"}})
            result(rid, {"content": [{"type": "text", "text": "done"}]})
        elif name == "ask":
            next_own_id += 1
            waiting[next_own_id] = rid
            pause_after[rid] = (params.get("arguments") or {}).get("then_ms", 0)
            send({"jsonrpc": "2.0", "id": next_own_id, "method": "elicitation/create",
                  "params": {"message": "Your name?", "requestedSchema": {"type": "object",
                             "properties": {"name": {"type": "string"}}}}})
        elif name == "ask_two":
            gathering[rid] = {}
            for request in ({"method": "elicitation/create", "params": {"message": "Your name?",
                             "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}},
                            {"method": "roots/list", "params": {}}):
                next_own_id += 1
                waiting[next_own_id] = rid
                gathering[rid][next_own_id] = None
                send(dict({"jsonrpc": "2.0", "id": next_own_id}, **request))
        elif name == "touch":
            send({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "mock://r1"}})
            result(rid, {"content": [{"type": "text", "text": "touched"}]})
        elif name == "slow":
            pass
        elif name == "spew":
            # More than a pipe holds: a child whose stderr is not drained blocks right here.
            for _ in range(4):
                sys.stderr.buffer.write(b"\xff\xfe not utf-8 " + b"\xc3" * (256 * 1024) + b"\n")
            sys.stderr.buffer.flush()
            result(rid, {"content": [{"type": "text", "text": "spewed"}]})
        elif name == "flood":
            sys.stdout.write("x" * (33 * 1024 * 1024) + "\n")
            sys.stdout.flush()
            result(rid, {"content": [{"type": "text", "text": "flooded"}]})
        elif name == "mktask":
            task_id = f"T{len(tasks) + 1}"
            tasks[task_id] = {"taskId": task_id, "status": "working", "ttl": 60000,
                              "createdAt": "2026-11-22T00:00:00Z", "lastUpdatedAt": "2026-11-22T00:00:00Z"}
            result(rid, {"task": tasks[task_id]})
        elif name == "leak":
            task_id = params.get("arguments", {}).get("taskId")
            related = {"io.modelcontextprotocol/related-task": {"taskId": task_id}}
            send({"jsonrpc": "2.0", "method": "notifications/tasks/status",
                  "params": dict(tasks.get(task_id, {"taskId": task_id}), status="completed")})
            next_own_id += 1
            waiting[next_own_id] = rid
            send({"jsonrpc": "2.0", "id": next_own_id, "method": "elicitation/create",
                  "params": {"message": "About your task", "_meta": related,
                             "requestedSchema": {"type": "object", "properties": {}}}})
        elif name in ("big", "bigstream"):
            size = int(params.get("arguments", {}).get("size", 1024))
            token = (params.get("_meta") or {}).get("progressToken")
            if name == "bigstream":
                send({"jsonrpc": "2.0", "method": "notifications/progress",
                      "params": {"progressToken": token if token is not None else "none", "progress": 1}})
            result(rid, {"content": [{"type": "text", "text": "x" * size}]})
        elif name == "subscribed":
            result(rid, {"content": [{"type": "text", "text": json.dumps(sorted(subscribed))}]})
        elif name == "cancellations":
            result(rid, {"content": [{"type": "text", "text": json.dumps(cancelled)}]})
        elif name == "grow_slowly":
            if not any(t["name"] == "grown_slowly" for t in tools):
                tools.append({"name": "grown_slowly", "inputSchema": {"type": "object"}})
            send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
            time.sleep(2)
            result(rid, {"content": [{"type": "text", "text": "grown slowly"}]})
        elif name == "grow":
            if not any(t["name"] == "grown" for t in tools):
                tools.append({"name": "grown", "inputSchema": {"type": "object"}})
            result(rid, {"content": [{"type": "text", "text": "grown"}]})
            send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        else:
            error(rid, -32602, f"Unknown tool: {name}")
    else:
        error(rid, -32601, "Method not found")
