"""A minimal stdio MCP server (2025-11-25, no SDK) for the shutdown tests: it writes its pid to
PIDFILE at start and, on SIGTERM, writes "SIGTERM" to MARKER and exits 0 — or, with
--ignore-term, ignores SIGTERM (so only SIGKILL ends it).

Usage: python term_server.py PIDFILE MARKER [--ignore-term]
"""

import json
import os
import signal
import sys

pidfile, marker = sys.argv[1], sys.argv[2]
ignore = "--ignore-term" in sys.argv[3:]


def on_term(signum, frame):
    with open(marker, "w") as f:
        f.write("SIGTERM")
    sys.exit(0)


signal.signal(signal.SIGTERM, signal.SIG_IGN if ignore else on_term)
with open(pidfile, "w") as f:
    f.write(str(os.getpid()))

for line in sys.stdin:
    message = json.loads(line)
    if "id" not in message or "method" not in message:
        continue
    method = message["method"]
    if method == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                  "serverInfo": {"name": "term-server", "version": "1"}}
        answer = {"result": result}
    elif method == "tools/list":
        answer = {"result": {"tools": [{"name": "noop", "inputSchema": {"type": "object"}}]}}
    elif method == "ping":
        answer = {"result": {}}
    else:
        answer = {"error": {"code": -32601, "message": f"{method} not found"}}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], **answer}) + "\n")
    sys.stdout.flush()
