"""Fixtures: real MCP servers from PyPI and npm behind one mcpgate."""

from __future__ import annotations

import pytest

from harness import NODE_BIN, VENV_BIN, start_everything, start_gateway, stop


def gateway_config(everything_port: int, ghost_port: int) -> str:
    return f"""
listen:
  addr: 127.0.0.1:0
  max_body_bytes: 4MiB
admin:
  addr: 127.0.0.1:0
upstreams:
  - id: time
    stdio: {{ command: "{VENV_BIN / 'mcp-server-time'}", args: ["--local-timezone", "UTC"] }}
  - id: everything
    http: {{ url: "http://127.0.0.1:{everything_port}/mcp" }}
    timeout: 20s
  - id: memory
    stdio:
      command: "{NODE_BIN / 'mcp-server-memory'}"
      env: {{ MEMORY_FILE_PATH: "memory.jsonl" }}
      cwd: .
  - id: ghost
    http: {{ url: "http://127.0.0.1:{ghost_port}/mcp" }}
    timeout: 2s
catalogue:
  page_size: 7
  retry_interval: 1s
"""


@pytest.fixture(scope="session")
def everything(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("everything")
    proc, port = start_everything(workdir / "everything.log")
    yield port
    stop(proc)


@pytest.fixture(scope="session")
def gateway(everything, tmp_path_factory):
    """mcpgate in front of time (stdio, PyPI), everything (HTTP, npm), memory (stdio, npm) and
    ghost (HTTP, nothing listening: down at start)."""
    from harness import free_port

    workdir = tmp_path_factory.mktemp("gateway")
    gw = start_gateway(gateway_config(everything, free_port()), workdir)
    yield gw
    stop(gw.proc)
