"""The conformance suite's fixture server, put behind mcpgate as its only upstream.

The official conformance suite (npm @modelcontextprotocol/conformance) calls fixed fixture
names (`test_simple_text`, `test://static-text`, ...). This stdio server implements them, in
either era, so the suite exercises the gateway's relay of each feature:

    python3 fixture.py legacy   # initialize handshake, real server->client requests (2025-11-25)
    python3 fixture.py modern   # per-request _meta, MRTR InputRequiredResults (2026-07-28),
                                # and the tasks extension (tasks_ext.py)
    python3 fixture.py dual     # both, as servers on the current official SDKs: the process
                                # answers server/discover and initialize, and the first of them
                                # it gets selects its era (2026-07-28 basic/versioning: an
                                # initialize selects legacy semantics for the stdio process)

Standard library only. Requests are handled concurrently: a tool waiting for the client's answer
to its sampling or elicitation request does not block the others.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys

import tasks_ext
from rpc import RpcError, answer, check_responses, elicit_request, input_required, text

ERA = sys.argv[1] if len(sys.argv) > 1 else "legacy"
STATE_KEY = os.urandom(32)
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
WAV = base64.b64encode(b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00D\xac\x00\x00\x88X\x01\x00"
                       b"\x02\x00\x10\x00data\x00\x00\x00\x00").decode()
LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]

out_lock = asyncio.Lock()
pending = {}          # our request id -> future of the client's response
next_id = [0]
log_level = [None]    # legacy: set by logging/setLevel
subscriptions = set()
dynamic = {"tools": 0, "prompts": 0}  # bumped by the test_trigger_* tools to change the lists


async def send(msg):
    async with out_lock:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


async def ask(method, params):
    """A legacy server->client request; returns the client's result or raises with its error."""
    next_id[0] += 1
    rid = f"fixture-{next_id[0]}"
    fut = asyncio.get_running_loop().create_future()
    pending[rid] = fut
    await send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
    reply = await fut
    if "error" in reply:
        raise RuntimeError(reply["error"].get("message", "error"))
    return reply["result"]


# ---- MRTR state (modern): HMAC-protected, bound to the tool and round.

def seal(payload):
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
    tag = hmac.new(STATE_KEY, body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{tag}"


def unseal(state):
    try:
        body, tag = state.rsplit(".", 1)
        good = hmac.new(STATE_KEY, body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(tag, good):
            raise ValueError("bad tag")
        return json.loads(base64.urlsafe_b64decode(body.encode()))
    except Exception:
        raise RpcError(-32602, "Invalid requestState: integrity check failed")


SAMPLE_CAPITAL = {"method": "sampling/createMessage", "params": {"messages": [
    {"role": "user", "content": {"type": "text", "text": "What is the capital of France?"}}], "maxTokens": 100}}
ROOTS = {"method": "roots/list", "params": {}}


def modern_tool(name, params):
    """MRTR fixtures: InputRequiredResult rounds driven by inputResponses and requestState."""
    responses = check_responses(params)
    caps = (params.get("_meta") or {}).get("io.modelcontextprotocol/clientCapabilities") or {}
    if name == "test_input_required_result_elicitation":
        a = answer(responses, "user_name")
        if a is None:
            return input_required({"user_name": elicit_request("What is your name?", {"name": {"type": "string"}}, ["name"])})
        return text(f"Hello, {(a.get('content') or {}).get('name', 'unknown')}!")
    if name == "test_input_required_result_sampling":
        a = answer(responses, "capital_question")
        if a is None:
            return input_required({"capital_question": SAMPLE_CAPITAL})
        return text(f"The model said: {json.dumps(a.get('content'))}")
    if name == "test_input_required_result_list_roots":
        a = answer(responses, "client_roots")
        if a is None:
            return input_required({"client_roots": ROOTS})
        return text(f"Roots: {json.dumps(a.get('roots', []))}")
    if name in ("test_input_required_result_request_state", "test_input_required_result_tampered_state"):
        state = params.get("requestState")
        a = answer(responses, "confirm")
        if state is None or a is None:
            return input_required({"confirm": elicit_request("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])},
                                  seal({"tool": name, "round": 1}))
        payload = unseal(state)
        if payload.get("tool") != name:
            raise RpcError(-32602, "Invalid requestState: issued for another request")
        return text("state-ok: confirmed")
    if name == "test_input_required_result_multiple_inputs":
        keys = ("user_name", "greeting", "client_roots")
        if params.get("requestState") is None or any(answer(responses, k) is None for k in keys):
            return input_required({
                "user_name": elicit_request("What is your name?", {"name": {"type": "string"}}, ["name"]),
                "greeting": {"method": "sampling/createMessage", "params": {"messages": [
                    {"role": "user", "content": {"type": "text", "text": "Generate a greeting"}}], "maxTokens": 50}},
                "client_roots": ROOTS,
            }, seal({"tool": name, "round": 1}))
        unseal(params["requestState"])
        return text("Received all inputs: user_name, greeting, client_roots")
    if name == "test_input_required_result_multi_round":
        state = params.get("requestState")
        payload = unseal(state) if state else {"round": 0}
        step1 = elicit_request("Step 1: What is your name?", {"name": {"type": "string"}}, ["name"])
        step2 = elicit_request("Step 2: What is your favorite color?", {"color": {"type": "string"}}, ["color"])
        if payload.get("round") == 1 and answer(responses, "step1") is not None:
            name1 = (answer(responses, "step1").get("content") or {}).get("name")
            return input_required({"step2": step2}, seal({"tool": name, "round": 2, "name": name1}))
        if payload.get("round") == 2:
            a = answer(responses, "step2")
            if a is None:
                return input_required({"step2": step2}, state)
            return text(f"Done: name={payload.get('name')}, color={(a.get('content') or {}).get('color')}")
        return input_required({"step1": step1}, seal({"tool": name, "round": 1}))
    if name == "test_missing_capability":
        if "sampling" not in caps:
            raise RpcError(-32021, "Missing required client capability: sampling",
                           {"requiredCapabilities": {"sampling": {}}})
        return text("sampling capability present")
    if name == "test_custom_headers":
        return text(f"headers ok: {json.dumps(params.get('arguments') or {})}")
    if name == "test_input_required_result_capabilities":
        requests = {}
        if "sampling" in caps:
            requests["sample"] = SAMPLE_CAPITAL
        if "elicitation" in caps:
            requests["ask"] = elicit_request("What is your name?", {"name": {"type": "string"}}, ["name"])
        if not requests or all(answer(responses, k) is not None for k in requests):
            return text("capabilities respected")
        return input_required(requests)
    return None


async def legacy_tool(name, args):
    if name == "test_sampling":
        result = await ask("sampling/createMessage", {"messages": [
            {"role": "user", "content": {"type": "text", "text": args.get("prompt", "")}}], "maxTokens": 100})
        return text(f"LLM response: {(result.get('content') or {}).get('text', '')}")
    if name == "test_elicitation":
        result = await ask("elicitation/create", {"message": args.get("message", ""), "requestedSchema": {
            "type": "object", "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"}},
            "required": ["username", "email"]}})
        return text(f"User response: action={result.get('action')}, content={json.dumps(result.get('content'))}")
    if name == "test_elicitation_sep1034_defaults":
        result = await ask("elicitation/create", {"message": "Provide defaults", "requestedSchema": {
            "type": "object", "properties": {
                "name": {"type": "string", "default": "John Doe"},
                "age": {"type": "integer", "default": 30},
                "score": {"type": "number", "default": 95.5},
                "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                "verified": {"type": "boolean", "default": True}}}})
        return text(f"Elicitation completed: action={result.get('action')}, content={json.dumps(result.get('content'))}")
    if name == "test_elicitation_sep1330_enums":
        result = await ask("elicitation/create", {"message": "Pick options", "requestedSchema": {
            "type": "object", "properties": {
                "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                "titledSingle": {"type": "string", "oneOf": [
                    {"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"}]},
                "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                               "enumNames": ["Option One", "Option Two", "Option Three"]},
                "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                "titledMulti": {"type": "array", "items": {"anyOf": [
                    {"const": "value1", "title": "First Choice"}, {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"}]}}}}})
        return text(f"Elicitation completed: action={result.get('action')}, content={json.dumps(result.get('content'))}")
    return None


TOOLS = [
    ("test_simple_text", {}), ("test_image_content", {}), ("test_audio_content", {}),
    ("test_embedded_resource", {}), ("test_multiple_content_types", {}), ("test_tool_with_logging", {}),
    ("test_error_handling", {}), ("test_tool_with_progress", {}),
    ("test_sampling", {"prompt": {"type": "string"}}), ("test_elicitation", {"message": {"type": "string"}}),
    ("test_elicitation_sep1034_defaults", {}), ("test_elicitation_sep1330_enums", {}),
    ("test_input_required_result_elicitation", {}), ("test_input_required_result_sampling", {}),
    ("test_input_required_result_list_roots", {}), ("test_input_required_result_request_state", {}),
    ("test_input_required_result_tampered_state", {}), ("test_input_required_result_multiple_inputs", {}),
    ("test_input_required_result_multi_round", {}), ("test_input_required_result_capabilities", {}),
]
JSON_SCHEMA_2020 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
    "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                          "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                   "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                   "phone": {"type": "string"}, "email": {"type": "string"}},
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]}, "else": {"required": ["email"]},
    "additionalProperties": False,
}
CUSTOM_HEADERS_SCHEMA = {"type": "object", "properties": {
    "region": {"type": "string", "x-mcp-header": "Region"},
    "priority": {"type": "integer", "x-mcp-header": "Priority"},
    "verbose": {"type": "boolean", "x-mcp-header": "Verbose"},
    "query": {"type": "string"}}}


def tool_list():
    tools = [{"name": n, "description": f"Conformance fixture {n}",
              "inputSchema": {"type": "object", "properties": props, "required": list(props)}} for n, props in TOOLS]
    tools.append({"name": "json_schema_2020_12_tool", "description": "Tool with JSON Schema 2020-12 features",
                  "inputSchema": JSON_SCHEMA_2020})
    tools += [{"name": f"dynamic_tool_{i}", "description": "Added by test_trigger_tool_change",
               "inputSchema": {"type": "object"}} for i in range(dynamic["tools"])]
    for name in ("test_trigger_tool_change", "test_trigger_prompt_change"):
        tools.append({"name": name, "description": "Changes a list and announces it", "inputSchema": {"type": "object"}})
    if ERA == "modern":
        for name, description in (("test_missing_capability", "Requires the client's sampling capability"),
                                  ("test_streaming_elicitation", "Streams progress, then asks for input"),
                                  ("test_logging_tool", "Logs only at the requested level")):
            tools.append({"name": name, "description": description, "inputSchema": {"type": "object"}})
        tools.append({"name": "test_custom_headers", "description": "Mirrors parameters into Mcp-Param headers",
                      "inputSchema": CUSTOM_HEADERS_SCHEMA})
        tools += tasks_ext.tool_list()
    return tools


RESOURCES = [
    {"uri": "test://static-text", "name": "static-text", "description": "A static text resource", "mimeType": "text/plain"},
    {"uri": "test://static-binary", "name": "static-binary", "description": "A static PNG", "mimeType": "image/png"},
    {"uri": "test://watched-resource", "name": "watched", "description": "A resource to subscribe to", "mimeType": "text/plain"},
]
TEMPLATES = [{"uriTemplate": "test://template/{id}/data", "name": "template", "description": "Templated data",
              "mimeType": "application/json"}]
PROMPTS = [
    {"name": "test_simple_prompt", "description": "A simple prompt"},
    {"name": "test_prompt_with_arguments", "description": "A prompt with arguments",
     "arguments": [{"name": "arg1", "description": "First", "required": True},
                   {"name": "arg2", "description": "Second", "required": True}]},
    {"name": "test_prompt_with_embedded_resource", "description": "A prompt embedding a resource",
     "arguments": [{"name": "resourceUri", "description": "URI to embed", "required": True}]},
    {"name": "test_prompt_with_image", "description": "A prompt with an image"},
    {"name": "test_input_required_result_prompt", "description": "A prompt that asks for context"},
]


async def notify(method, params):
    await send({"jsonrpc": "2.0", "method": method, "params": params})


def wants_log(level, params):
    if ERA == "modern":
        asked = (params.get("_meta") or {}).get("io.modelcontextprotocol/logLevel")
    else:
        asked = log_level[0] or "debug"
    return asked in LEVELS and LEVELS.index(level) >= LEVELS.index(asked)


async def call_tool(params):
    name = params.get("name")
    args = params.get("arguments") or {}
    token = (params.get("_meta") or {}).get("progressToken")
    if name == "test_simple_text":
        return text("This is a simple text response for testing.")
    if name == "test_image_content":
        return {"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]}
    if name == "test_audio_content":
        return {"content": [{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]}
    if name == "test_embedded_resource":
        return {"content": [{"type": "resource", "resource": {"uri": "test://embedded-resource", "mimeType": "text/plain",
                                                              "text": "This is an embedded resource content."}}]}
    if name == "test_multiple_content_types":
        return {"content": [{"type": "text", "text": "Multiple content types test:"},
                            {"type": "image", "data": PNG, "mimeType": "image/png"},
                            {"type": "resource", "resource": {"uri": "test://mixed-content-resource", "mimeType": "application/json",
                                                              "text": json.dumps({"test": "data", "value": 123})}}]}
    if name == "test_tool_with_logging":
        for i, message in enumerate(["Tool execution started", "Tool processing data", "Tool execution completed"]):
            if i:
                await asyncio.sleep(0.05)
            if wants_log("info", params):
                await notify("notifications/message", {"level": "info", "logger": "fixture", "data": message})
        return text("Tool with logging executed successfully")
    if name == "test_error_handling":
        return {"isError": True, "content": [{"type": "text", "text": "This tool intentionally returns an error for testing"}]}
    if name == "test_tool_with_progress":
        for i, value in enumerate((0, 50, 100)):
            if i:
                await asyncio.sleep(0.05)
            if token is not None:
                await notify("notifications/progress", {"progressToken": token, "progress": value, "total": 100})
        return text("Tool with progress executed successfully")
    if name in ("test_trigger_tool_change", "test_trigger_prompt_change"):
        kind = "tools" if name == "test_trigger_tool_change" else "prompts"
        dynamic[kind] += 1
        await notify(f"notifications/{kind}/list_changed", {})
        return text(f"{kind} list changed")
    if name.startswith("dynamic_tool_"):
        return text(f"{name} called")
    if name == "json_schema_2020_12_tool":
        return text("JSON Schema 2020-12 tool called")
    if name == "test_logging_tool":
        for message in ("first", "second", "third"):
            if wants_log("info", params):
                await notify("notifications/message", {"level": "info", "logger": "fixture", "data": message})
        return text("logging tool done")
    if name == "test_streaming_elicitation" and ERA == "modern":
        if token is not None:
            await notify("notifications/progress", {"progressToken": token, "progress": 1, "total": 2})
        if answer(check_responses(params), "confirm") is None:
            return input_required({"confirm": elicit_request("Continue?", {"ok": {"type": "boolean"}}, ["ok"])})
        return text("streaming elicitation done")
    if ERA == "modern":
        result = await tasks_ext.call_tool(name, params) or modern_tool(name, params)
    else:
        result = await legacy_tool(name, args)
    if result is None:
        raise RpcError(-32602, f"Unknown tool: {name}")
    return result


async def get_prompt(params):
    name, args = params.get("name"), params.get("arguments") or {}
    if name == "test_simple_prompt":
        return {"messages": [{"role": "user", "content": {"type": "text", "text": "This is a simple prompt for testing."}}]}
    if name == "test_prompt_with_arguments":
        return {"messages": [{"role": "user", "content": {"type": "text",
                "text": f"Prompt with arguments: arg1='{args.get('arg1')}', arg2='{args.get('arg2')}'"}}]}
    if name == "test_prompt_with_embedded_resource":
        return {"messages": [
            {"role": "user", "content": {"type": "resource", "resource": {
                "uri": args.get("resourceUri", "test://example-resource"), "mimeType": "text/plain",
                "text": "Embedded resource content for testing."}}},
            {"role": "user", "content": {"type": "text", "text": "Please process the embedded resource above."}}]}
    if name == "test_prompt_with_image":
        return {"messages": [{"role": "user", "content": {"type": "image", "data": PNG, "mimeType": "image/png"}},
                             {"role": "user", "content": {"type": "text", "text": "Please analyze the image above."}}]}
    if name == "test_input_required_result_prompt" and ERA == "modern":
        a = answer(check_responses(params), "user_context")
        if a is None:
            return input_required({"user_context": elicit_request(
                "What context should the prompt use?", {"context": {"type": "string"}}, ["context"])})
        context = (a.get("content") or {}).get("context", "")
        return {"messages": [{"role": "user", "content": {"type": "text", "text": f"Context: {context}"}}]}
    raise RpcError(-32602, f"Unknown prompt: {name}")


def read_resource(params):
    uri = params.get("uri", "")
    if uri == "test://static-text":
        return {"contents": [{"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."}]}
    if uri == "test://static-binary":
        return {"contents": [{"uri": uri, "mimeType": "image/png", "blob": PNG}]}
    if uri == "test://watched-resource":
        return {"contents": [{"uri": uri, "mimeType": "text/plain", "text": "Watched resource content."}]}
    if uri.startswith("test://template/") and uri.endswith("/data"):
        rid = uri[len("test://template/"):-len("/data")]
        return {"contents": [{"uri": uri, "mimeType": "application/json",
                              "text": json.dumps({"id": rid, "templateTest": True, "data": f"Data for ID: {rid}"})}]}
    raise RpcError(-32602, "Resource not found", {"uri": uri})


CAPABILITIES = {"tools": {"listChanged": True}, "prompts": {"listChanged": True},
                "resources": {"subscribe": True, "listChanged": True}, "logging": {}, "completions": {}}


def select_era(era):
    """A dual-era process takes the era of the first handshake it gets."""
    global ERA
    if ERA == "dual":
        ERA = era


async def handle(method, params):
    if method == "initialize":
        select_era("legacy")
        if ERA == "modern":
            raise RpcError(-32601, "Method not found: this server speaks 2026-07-28 only")
        return {"protocolVersion": params.get("protocolVersion", "2025-11-25"), "capabilities": CAPABILITIES,
                "serverInfo": {"name": "mcpgate-conformance-fixture", "version": "1.0.0"}}
    if method == "server/discover":
        select_era("modern")
        if ERA != "modern":
            raise RpcError(-32601, "Method not found")
        caps = {k: v for k, v in CAPABILITIES.items() if k != "logging"}
        caps["extensions"] = {tasks_ext.EXTENSION: {}}
        return {"supportedVersions": ["2026-07-28"], "capabilities": caps}
    if method == "ping":
        return {}
    if ERA == "modern" and (result := tasks_ext.handle(method, params)) is not None:
        return result
    if method == "logging/setLevel":
        log_level[0] = params.get("level")
        return {}
    if method == "tools/list":
        return {"tools": tool_list()}
    if method == "tools/call":
        return await call_tool(params)
    if method == "prompts/list":
        return {"prompts": PROMPTS + [{"name": f"dynamic_prompt_{i}", "description": "Added by test_trigger_prompt_change"}
                                      for i in range(dynamic["prompts"])]}
    if method == "prompts/get":
        return await get_prompt(params)
    if method == "resources/list":
        return {"resources": RESOURCES}
    if method == "resources/templates/list":
        return {"resourceTemplates": TEMPLATES}
    if method == "resources/read":
        return read_resource(params)
    if method == "resources/subscribe":
        subscriptions.add(params.get("uri"))
        return {}
    if method == "resources/unsubscribe":
        subscriptions.discard(params.get("uri"))
        return {}
    if method == "completion/complete":
        value = (params.get("argument") or {}).get("value", "")
        return {"completion": {"values": [f"{value}-completed"], "total": 1, "hasMore": False}}
    raise RpcError(-32601, f"Method not found: {method}")


async def serve_one(msg):
    rid, method, params = msg.get("id"), msg.get("method"), msg.get("params") or {}
    try:
        result = await handle(method, params)
        if ERA == "modern" and isinstance(result, dict):
            result.setdefault("resultType", "complete")
            if method in ("server/discover", "resources/read") or method.endswith("/list"):
                result.setdefault("ttlMs", 0)
                result.setdefault("cacheScope", "public")
        await send({"jsonrpc": "2.0", "id": rid, "result": result})
    except RpcError as e:
        error = {"code": e.code, "message": e.message}
        if e.data is not None:
            error["data"] = e.data
        await send({"jsonrpc": "2.0", "id": rid, "error": error})
    except Exception as e:  # a fixture bug must still answer
        await send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32603, "message": str(e)}})


async def main():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks = set()
    while line := await reader.readline():
        if not line.strip():
            continue
        msg = json.loads(line)
        if "method" not in msg:
            fut = pending.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            continue
        if "id" not in msg:
            continue
        task = asyncio.create_task(serve_one(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


asyncio.run(main())
