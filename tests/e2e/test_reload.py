"""Configuration hot reload while clients are connected, with the official Python SDK client in
both eras and real upstream servers (server-everything over HTTP, mcp-server-time and the SDK
server over stdio):

- an upstream added and one removed by editing the file: both clients hear `list_changed` and
  then see the new catalogue; a long streaming call already on the removed upstream finishes
  with every progress tick; the unchanged stdio upstream keeps its process; a removed stdio
  upstream's process is stopped;
- an invalid edit changes nothing and is reported (log, `mcpgate_config_reloads_total`);
- a changed listen address is reported and kept; SIGHUP reloads (and does not end the process).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from harness import E2E, VENV_BIN, start_gateway, stop

SDK_SERVER = E2E / "servers" / "sdk_server.py"
TIME = f'{{ command: "{VENV_BIN / "mcp-server-time"}", args: ["--local-timezone", "UTC"] }}'
PIPE = f'{{ command: "{VENV_BIN / "python"}", args: ["{SDK_SERVER}"] }}'


def config(upstreams: str, addr: str = "127.0.0.1:0") -> str:
    return f"""
listen: {{ addr: "{addr}" }}
admin: {{ addr: 127.0.0.1:0 }}
upstreams:
{upstreams}
shutdown: {{ drain_delay: 0s }}
"""


def everything_upstream(port: int) -> str:
    return f'  - id: everything\n    http: {{ url: "http://127.0.0.1:{port}/mcp" }}\n    timeout: 30s\n'


def reloads(gw) -> dict[str, int]:
    with urllib.request.urlopen(gw.admin + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m[0]: int(float(m[1])) for m in
            re.findall(r'^mcpgate_config_reloads_total\{outcome="(\w+)"\} (\S+)$', text, re.M)}


def wait_for(predicate, what: str, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (value := predicate()):
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds}s: {what}")


def children(pid: int, needle: str) -> list[int]:
    """Pids of the processes whose parent is `pid` and whose command line holds `needle`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and needle in cmdline:
            found.append(int(entry.name))
    return found


def text_of(log: Path) -> str:
    """The gateway's log without terminal colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", log.read_text())


def tool_names(result) -> set[str]:
    return {t.name for t in result.tools}


def test_upstreams_added_and_removed_live_while_clients_are_connected(everything, tmp_path):
    gw = start_gateway(config(everything_upstream(everything) + f"  - id: time\n    stdio: {TIME}\n"), tmp_path)
    path = tmp_path / "mcpgate.yaml"
    log = tmp_path / "mcpgate.log"
    try:
        time_pid = wait_for(lambda: children(gw.proc.pid, "mcp-server-time"), "time started")
        legacy_heard: list[str] = []

        async def on_message(message):
            legacy_heard.append(type(getattr(message, "root", message)).__name__)

        async def run():
            async with Client(gw.url) as modern, Client(gw.url, mode="legacy", message_handler=on_message) as legacy:
                before = tool_names(await modern.list_tools())
                assert "everything__echo" in before and "time__get_current_time" in before
                assert not any(n.startswith("pipe__") for n in before)
                assert tool_names(await legacy.list_tools()) == before
                ticks: list[float] = []
                first = anyio.Event()

                async def progress(value, total, message):
                    ticks.append(value)
                    first.set()

                long_call = asyncio.create_task(modern.call_tool(
                    "everything__trigger-long-running-operation", {"duration": 5, "steps": 5},
                    progress_callback=progress))
                await first.wait()
                async with modern.listen(tools_list_changed=True) as changes:
                    # The edit: everything removed (a call is in flight on it), pipe added.
                    path.write_text(config(f"  - id: time\n    stdio: {TIME}\n  - id: pipe\n    stdio: {PIPE}\n"))
                    heard = None
                    with anyio.move_on_after(20):
                        async for event in changes:
                            heard = type(event).__name__
                            break
                    assert heard == "ToolsListChanged", heard
                after = tool_names(await modern.list_tools())
                assert "pipe__grow_tools" in after and "time__get_current_time" in after
                assert not any(n.startswith("everything__") for n in after), after
                # The call in flight on the removed upstream finished, every tick delivered.
                result = await long_call
                assert not result.is_error, result
                assert ticks == [1, 2, 3, 4, 5], ticks
                # The legacy client heard of the change on its stream and sees the same list.
                for _ in range(50):
                    if "ToolListChangedNotification" in legacy_heard:
                        break
                    await anyio.sleep(0.1)
                assert "ToolListChangedNotification" in legacy_heard, legacy_heard
                assert tool_names(await legacy.list_tools()) == after
                # The added upstream serves calls; the removed one is gone.
                added = await legacy.call_tool("pipe__grow_tools", {})
                assert not added.is_error and added.content[0].text.startswith("added extra_"), added
                with pytest.raises(MCPError, match="Unknown tool: everything__echo"):
                    await modern.call_tool("everything__echo", {"message": "x"})

        anyio.run(run)
        assert reloads(gw).get("applied") == 1, reloads(gw)
        # The unchanged stdio upstream kept its process.
        assert children(gw.proc.pid, "mcp-server-time") == time_pid
        pipe_pid = wait_for(lambda: children(gw.proc.pid, "sdk_server.py"), "pipe started")

        # A removed stdio upstream's process is stopped (nothing holds it).
        path.write_text(config(f"  - id: time\n    stdio: {TIME}\n"))
        wait_for(lambda: reloads(gw).get("applied") == 2, "second reload applied")
        assert pipe_pid
        wait_for(lambda: not children(gw.proc.pid, "sdk_server.py"),
                 "the removed stdio upstream's process exited")
        assert re.search(r'configuration reloaded.*removed=\["pipe"\]', text_of(log)), "logged"
    finally:
        stop(gw.proc)


def test_an_invalid_edit_changes_nothing_and_a_restart_only_change_is_kept(everything, tmp_path):
    good = config(everything_upstream(everything))
    gw = start_gateway(good, tmp_path)
    path = tmp_path / "mcpgate.yaml"
    log = tmp_path / "mcpgate.log"
    try:
        async def tools() -> set[str]:
            async with Client(gw.url) as c:
                return tool_names(await c.list_tools())

        before = anyio.run(tools)
        # An invalid edit: an upstream with a bad id, and a key that does not exist.
        path.write_text(good.replace("upstreams:", "upstreams:\n  - id: Bad_Id\n    http: { url: \"ftp://x\" }"))
        wait_for(lambda: reloads(gw).get("rejected") == 1, "invalid edit rejected")
        assert "configuration reload rejected" in text_of(log)
        assert "Bad_Id" in text_of(log), "the problem is named"
        assert anyio.run(tools) == before
        # A changed listen address cannot apply live: reported, and the old one still serves.
        path.write_text(config(everything_upstream(everything), addr="127.0.0.1:1"))
        wait_for(lambda: "take effect only at restart" in text_of(log), "restart-only change reported")
        assert re.search(r'sections=\["listen"\]', text_of(log))
        assert anyio.run(tools) == before
        counts = reloads(gw)
        # SIGHUP reloads the (unchanged) file, and the process lives on.
        os.kill(gw.proc.pid, signal.SIGHUP)
        wait_for(lambda: reloads(gw).get("unchanged", 0) > counts.get("unchanged", 0), "SIGHUP reload")
        assert gw.proc.poll() is None
        assert anyio.run(tools) == before
        assert reloads(gw).get("applied", 0) == 0
    finally:
        stop(gw.proc)
