"""Graceful shutdown as an orchestrator drives it: SIGTERM while the official Python SDK client
has a long streaming call (progress notifications) in flight through mcpgate to the real
server-everything. `/readyz` goes unready first while calls are still served; after the drain
delay new connections are refused; the call in flight finishes; the process exits 0 within the
deadline. A second signal exits at once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request

import anyio
from mcp import Client

from harness import modern_body, modern_headers, post, start_gateway, stop

DRAIN = 2.0
GRACE = 20.0


def config(everything: int) -> str:
    return f"""
listen: {{ addr: 127.0.0.1:0 }}
admin: {{ addr: 127.0.0.1:0 }}
upstreams:
  - id: everything
    http: {{ url: "http://127.0.0.1:{everything}/mcp" }}
    timeout: 30s
shutdown: {{ drain_delay: {DRAIN}s, grace: {GRACE}s }}
"""


def readyz(gw) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(gw.admin + "/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def accepts(gw) -> bool:
    try:
        with socket.create_connection((gw.host, gw.port), timeout=1):
            return True
    except OSError:
        return False


def test_sigterm_drains_then_lets_the_call_in_flight_finish(everything, tmp_path):
    gw = start_gateway(config(everything), tmp_path)
    seen: dict = {}

    async def run():
        async with Client(gw.url) as c:
            ticks: list[float] = []
            first = anyio.Event()

            async def progress(value, total, message):
                ticks.append(value)
                first.set()

            # The SDK lists tools to validate a result against its output schema: listed
            # now, it sends nothing new once the listener has stopped.
            await c.list_tools()
            call = asyncio.create_task(c.call_tool(
                "trigger-long-running-operation", {"duration": 6, "steps": 6},
                progress_callback=progress))
            await first.wait()
            seen["before"] = (await anyio.to_thread.run_sync(readyz, gw))[0]
            os.kill(gw.proc.pid, signal.SIGTERM)
            sent = time.monotonic()
            # /readyz goes unready first ...
            while (answer := await anyio.to_thread.run_sync(readyz, gw))[0] != 503:
                assert time.monotonic() - sent < 1, answer
                await anyio.sleep(0.05)
            seen["draining"] = answer[1]["status"]
            # ... while new connections and calls are still served,
            listed = await anyio.to_thread.run_sync(
                lambda: post(gw, modern_body("tools/list"), modern_headers("tools/list")))
            seen["listed_while_draining"] = listed.status
            assert time.monotonic() - sent < DRAIN, "the drain check ran past the drain delay"
            # ... and after the drain delay the listener stops accepting.
            while await anyio.to_thread.run_sync(accepts, gw):
                assert time.monotonic() - sent < DRAIN + 5
                await anyio.sleep(0.05)
            seen["refused_after"] = time.monotonic() - sent
            result = await call
            seen["call_error"] = result.is_error
            seen["ticks"] = len(ticks)

    try:
        anyio.run(run)
        started = time.monotonic()
        code = gw.proc.wait(timeout=GRACE + 10)
        seen["exit_code"] = code
        seen["exit_wait"] = time.monotonic() - started
    finally:
        stop(gw.proc)
    assert seen["before"] == 200
    assert seen["draining"] == "draining"
    assert seen["listed_while_draining"] == 200
    assert DRAIN - 0.2 <= seen["refused_after"] < DRAIN + 5, seen
    assert seen["call_error"] is False and seen["ticks"] == 6, seen
    assert seen["exit_code"] == 0, seen
    log = (tmp_path / "mcpgate.log").read_text()
    assert "requests still in flight at shutdown were dropped" not in log


def test_a_second_signal_exits_at_once(everything, tmp_path):
    text = config(everything).replace(f"drain_delay: {DRAIN}s", "drain_delay: 60s")
    gw = start_gateway(text, tmp_path)
    try:
        os.kill(gw.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while readyz(gw)[0] != 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(gw.proc.pid, signal.SIGTERM)
        assert gw.proc.wait(timeout=5) == 1, "the second signal ends the 60 s drain at once"
    finally:
        stop(gw.proc)


def test_stdio_upstreams_get_sigterm_then_sigkill(tmp_path):
    """At shutdown a stdio server gets SIGTERM and may exit cleanly; one that ignores it is
    killed after the 5 s stop grace, and the gateway still exits 0."""
    from harness import ROOT, VENV_BIN

    server = ROOT / "tests" / "e2e" / "servers" / "term_server.py"
    python = VENV_BIN / "python"
    files = {name: tmp_path / name for name in ("polite.pid", "polite.term", "stubborn.pid", "stubborn.term")}
    gw = start_gateway(f"""
listen: {{ addr: 127.0.0.1:0 }}
admin: {{ addr: 127.0.0.1:0 }}
upstreams:
  - id: polite
    stdio: {{ command: "{python}", args: ["{server}", "{files['polite.pid']}", "{files['polite.term']}"] }}
  - id: stubborn
    stdio: {{ command: "{python}", args: ["{server}", "{files['stubborn.pid']}", "{files['stubborn.term']}", "--ignore-term"] }}
shutdown: {{ drain_delay: 0s, grace: 5s }}
""", tmp_path)
    try:
        deadline = time.monotonic() + 30
        while readyz(gw)[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        pids = {name: int(files[f"{name}.pid"].read_text()) for name in ("polite", "stubborn")}
        os.kill(gw.proc.pid, signal.SIGTERM)
        started = time.monotonic()
        assert gw.proc.wait(timeout=15) == 0
        took = time.monotonic() - started
    finally:
        stop(gw.proc)
    assert files["polite.term"].read_text() == "SIGTERM", "the polite server was asked to stop"
    assert not files["stubborn.term"].exists()
    assert 4.5 <= took < 10, f"the stubborn server is killed after the 5 s stop grace ({took:.1f}s)"
    for name, pid in pids.items():
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower(), f"{name} still runs"
