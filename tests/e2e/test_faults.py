"""An upstream that dies in the middle of a call: the caller gets a clear gateway error and the
gateway keeps serving the other upstreams."""

from __future__ import annotations

import threading
import time

import pytest

from harness import VENV_BIN, modern_body, modern_headers, post, start_everything, start_gateway, stop


@pytest.fixture
def doomed(tmp_path):
    proc, port = start_everything(tmp_path / "everything.log")
    config = f"""
listen: {{ addr: 127.0.0.1:0 }}
upstreams:
  - id: time
    stdio: {{ command: "{VENV_BIN / 'mcp-server-time'}" }}
  - id: everything
    http: {{ url: "http://127.0.0.1:{port}/mcp" }}
    timeout: 30s
"""
    gw = start_gateway(config, tmp_path)
    yield gw, proc
    stop(gw.proc)
    stop(proc)


def test_upstream_dies_mid_call(doomed):
    gw, everything = doomed
    answers = {}

    def long_call():
        answers["long"] = post(gw, modern_body("tools/call", {
            "name": "everything__trigger-long-running-operation", "arguments": {"duration": 20, "steps": 20}}),
            modern_headers("tools/call", "everything__trigger-long-running-operation"))

    caller = threading.Thread(target=long_call)
    started = time.monotonic()
    caller.start()
    time.sleep(1.5)
    everything.kill()
    caller.join(timeout=25)
    assert not caller.is_alive()
    assert time.monotonic() - started < 15, "the failure is reported when the upstream dies, not at the timeout"
    answer = answers["long"]
    assert answer.status == 200
    error = answer.body["error"]
    assert error["code"] == -32603
    assert error["data"]["upstream"] == "everything"
    assert error["data"]["reason"] in ("disconnected", "unavailable")

    again = post(gw, modern_body("tools/call", {"name": "time__get_current_time", "arguments": {"timezone": "UTC"}}),
                 modern_headers("tools/call", "time__get_current_time"))
    assert again.status == 200 and again.body["result"]["structuredContent"]["timezone"] == "UTC"
    dead = post(gw, modern_body("tools/call", {"name": "everything__echo", "arguments": {"message": "hi"}}),
                modern_headers("tools/call", "everything__echo"))
    assert dead.body["error"]["data"]["reason"] == "unavailable"
