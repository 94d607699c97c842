"""Bad input sent to a gateway fronting real servers: each gets a clear answer, and the gateway
keeps serving."""

from __future__ import annotations

import json
import re
import urllib.request

from harness import MODERN, legacy_session, modern_body, modern_headers, post, request


def error_code(answer) -> int:
    return answer.body["error"]["code"]


def test_body_not_json(gateway):
    a = post(gateway, b"{this is not json")
    assert (a.status, error_code(a)) == (400, -32700)


def test_json_that_is_not_jsonrpc(gateway):
    a = post(gateway, {"hello": "world"})
    assert (a.status, error_code(a)) == (400, -32600)
    batch = post(gateway, [{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
    assert (batch.status, error_code(batch)) == (400, -32600)


def test_unknown_method_both_eras(gateway):
    sid = legacy_session(gateway)
    a = post(gateway, {"jsonrpc": "2.0", "id": 5, "method": "tools/explode"},
             {"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"})
    assert (a.status, error_code(a), a.body["id"]) == (200, -32601, 5)
    m = post(gateway, modern_body("tools/explode"), modern_headers("tools/explode"))
    assert (m.status, error_code(m)) == (404, -32601)


def test_unknown_tool_both_eras(gateway):
    sid = legacy_session(gateway)
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "time__no_such_tool", "arguments": {}}}
    a = post(gateway, call, {"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"})
    assert (a.status, error_code(a)) == (200, -32602)
    assert "time__no_such_tool" in a.body["error"]["message"]
    m = post(gateway, modern_body("tools/call", {"name": "ghost__tool", "arguments": {}}),
             modern_headers("tools/call", "ghost__tool"))
    assert (m.status, error_code(m)) == (200, -32602)


def test_unknown_or_forged_session_id(gateway):
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    forged = post(gateway, listing, {"Mcp-Session-Id": "forged-0000", "MCP-Protocol-Version": "2025-11-25"})
    assert forged.status == 404
    sid = legacy_session(gateway)
    tampered = sid[:-3] + ("AAA" if not sid.endswith("AAA") else "BBB")
    assert post(gateway, listing, {"Mcp-Session-Id": tampered}).status == 404
    missing = post(gateway, listing, {"MCP-Protocol-Version": "2025-11-25"})
    assert (missing.status, error_code(missing)) == (400, -32600)
    ended = request(gateway, "DELETE", None, {"Mcp-Session-Id": sid})
    assert ended.status == 200
    assert post(gateway, listing, {"Mcp-Session-Id": sid}).status == 404, "a deleted session is gone"


def test_wrong_protocol_version(gateway):
    sid = legacy_session(gateway, "2025-06-18")
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    a = post(gateway, listing, {"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-03-26"})
    assert (a.status, error_code(a)) == (400, -32600)
    b = post(gateway, listing, {"MCP-Protocol-Version": "1999-01-01"})
    assert (b.status, error_code(b)) == (400, -32022)
    assert MODERN in b.body["error"]["data"]["supported"]
    body = modern_body("tools/list")
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2099-12-31"
    c = post(gateway, body, {"MCP-Protocol-Version": "2099-12-31", "Mcp-Method": "tools/list"})
    assert (c.status, error_code(c)) == (400, -32022)
    assert c.body["error"]["data"]["requested"] == "2099-12-31"


def test_modern_request_without_meta(gateway):
    a = post(gateway, {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}}, modern_headers("tools/list"))
    assert (a.status, error_code(a)) == (400, -32602)
    assert a.body["id"] == 3


def test_header_and_body_disagree(gateway):
    a = post(gateway, modern_body("tools/call", {"name": "time__get_current_time", "arguments": {"timezone": "UTC"}}),
             modern_headers("tools/call", "everything__echo"))
    assert (a.status, error_code(a)) == (400, -32020)
    b = post(gateway, modern_body("tools/list"), modern_headers("prompts/list"))
    assert (b.status, error_code(b)) == (400, -32020)
    c = post(gateway, modern_body("tools/list"), {"Mcp-Method": "tools/list", "MCP-Protocol-Version": "2025-11-25"})
    assert (c.status, error_code(c)) == (400, -32020)


def test_invalid_cursor(gateway):
    a = post(gateway, modern_body("tools/list", {"cursor": "not-a-cursor-we-issued"}), modern_headers("tools/list"))
    assert (a.status, error_code(a)) == (200, -32602)
    first = post(gateway, modern_body("tools/list"), modern_headers("tools/list"))
    prompts_with_tools_cursor = post(gateway, modern_body("prompts/list", {"cursor": first.body["result"]["nextCursor"]}),
                                     modern_headers("prompts/list"))
    assert error_code(prompts_with_tools_cursor) == -32602


def test_twenty_megabyte_body_is_rejected_by_the_limit(gateway):
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "everything__echo", "arguments": {"message": "x" * (20 * 1024 * 1024)}}}).encode()
    a = post(gateway, big)
    assert a.status == 413
    assert "4194304" in a.body["error"]["message"]
    ok = post(gateway, modern_body("tools/list"), modern_headers("tools/list"))
    assert ok.status == 200, "the gateway keeps serving"


def test_origin_not_allowed(gateway):
    a = post(gateway, modern_body("tools/list"), {**modern_headers("tools/list"), "Origin": "https://evil.example"})
    assert a.status == 403
    b = post(gateway, modern_body("tools/list"), {**modern_headers("tools/list"), "Host": "evil.example"})
    assert b.status == 403


def test_modern_results_carry_era_fields(gateway):
    a = post(gateway, modern_body("tools/list"), modern_headers("tools/list"))
    result = a.body["result"]
    assert result["resultType"] == "complete"
    assert result["cacheScope"] == "private" and isinstance(result["ttlMs"], int)
    d = post(gateway, modern_body("server/discover"), modern_headers("server/discover"))
    assert MODERN in d.body["result"]["supportedVersions"]
    assert "tools" in d.body["result"]["capabilities"]
    assert request(gateway, "GET", None, {"MCP-Protocol-Version": MODERN}).status == 405
    assert request(gateway, "DELETE", None, {"MCP-Protocol-Version": MODERN}).status == 405


def test_upstream_down_at_start_leaves_a_partial_catalogue(gateway):
    names = []
    cursor = None
    while True:
        params = {"cursor": cursor} if cursor else {}
        page = post(gateway, modern_body("tools/list", params), modern_headers("tools/list")).body["result"]
        names += [t["name"] for t in page["tools"]]
        cursor = page.get("nextCursor")
        if not cursor:
            break
    assert any(n.startswith("time__") for n in names)
    assert not any(n.startswith("ghost__") for n in names)
    metrics = urllib.request.urlopen(f"{gateway.admin}/metrics", timeout=10).read().decode()
    assert re.search(r'mcpgate_upstream_up\{upstream="ghost"\} 0', metrics), metrics
    assert re.search(r'mcpgate_upstream_up\{upstream="time"\} 1', metrics)
    assert re.search(r'mcpgate_catalogue_refresh_failures_total\{upstream="ghost"\} [1-9]', metrics)
