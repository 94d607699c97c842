"""Three mcpgate processes with one session key and one Redis (redis-server, Debian) behind nginx
(Debian) as a plain round-robin load balancer without stickiness, in front of the real
server-everything and a server built on the official Python SDK (tests/e2e/servers/sdk_server.py):

- the official TypeScript SDK client (legacy) initializes, lists and calls through the balancer
  while its requests land on every replica;
- a legacy session carries on when one replica is killed mid-test (nginx passes the next
  request to another replica; no session is lost);
- the TypeScript SDK client's response stream, cut by a balancer restart mid-call, resumes
  with Last-Event-ID on a replica that did not send it (the new balancer leaves the sender out):
  every progress notification arrives once, then the result;
- the TypeScript SDK client subscribes to a resource and hears every update on its standalone
  stream, whichever replicas its subscribe, its stream and the calls that change the resource
  land on;
- a `DELETE` through the balancer makes the session unknown on every replica;
- the official Python SDK client (modern) answers elicitations that server-everything (legacy)
  asks mid-call, while each retry lands on another replica than the one holding the call;
- a per-principal limit of 30/m admits 30 (±5 %) calls across the three replicas together;
  with Redis stopped the calls follow `on_store_error: fail_open` (counted); with Redis back
  the limit holds again without a restart;
- a task server-everything keeps per upstream session, made through one replica, is listed,
  polled and collected through the others (one upstream session per client session);
- with Redis behind a Sentinel, the master killed mid-test: every replica follows the promoted
  replica by itself, and limits, task owners, upstream sessions and DELETE work through it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import E2E, VENV_BIN, Gateway, free_port, post, start_gateway, stop, wait_for_port

NGINX = Path("/usr/sbin/nginx")
LIMIT = 30


@dataclass
class Redis:
    proc: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"


def start_redis(port: int | None = None, *args: str) -> Redis:
    port = port or free_port()
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                             "--save", "", "--appendonly", "no", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_for_port(port, proc)
    return Redis(proc, port)


def start_nginx(workdir: Path, ports: list[int], port: int | None = None,
                name: str = "nginx") -> tuple[subprocess.Popen, Gateway]:
    """nginx round-robin over the replicas: no stickiness; a replica that refuses connections
    is skipped (the request had not been sent, so even a POST goes to the next one)."""
    prefix = workdir / name
    (prefix / "logs").mkdir(parents=True)
    port = port or free_port()
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in ports)
    (prefix / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  upstream gateways {{
{servers}
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://gateways;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 300s;
      proxy_next_upstream error timeout;
    }}
  }}
}}
""")
    proc = subprocess.Popen([str(NGINX), "-c", str(prefix / "nginx.conf"), "-p", str(prefix)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_for_port(port, proc)
    return proc, Gateway(proc, f"http://127.0.0.1:{port}/mcp", "127.0.0.1", port, None)


@dataclass
class Cluster:
    replicas: list[Gateway]
    balancer: Gateway
    redis: Redis
    nginx: subprocess.Popen
    workdir: Path
    # Other processes the cluster stops with it.
    others: list[subprocess.Popen]


@pytest.fixture
def cluster(everything, tmp_path):
    redis = start_redis()
    c = start_cluster(everything, tmp_path, redis, f'url: "{redis.url}"')
    yield c
    stop_cluster(c)


def start_cluster(everything: int, tmp_path: Path, redis: Redis, where: str) -> Cluster:
    """Three replicas sharing `redis` (reached as `where` says) behind nginx."""
    sdk_port = free_port()
    sdk = subprocess.Popen([str(VENV_BIN / "python"), str(E2E / "servers" / "sdk_server.py"), str(sdk_port)],
                           stdout=(tmp_path / "sdk.log").open("w"), stderr=subprocess.STDOUT)
    wait_for_port(sdk_port, sdk)
    key = tmp_path / "session.key"
    key.write_text("5e" * 32)
    config = f"""
listen: {{ addr: 127.0.0.1:0 }}
admin: {{ addr: 127.0.0.1:0 }}
session: {{ key_file: "{key}" }}
limits:
  per_principal: {LIMIT}/m
  store: redis
  redis: {{ {where}, timeout: 200ms }}
  on_store_error: fail_open
upstreams:
  - id: everything
    http: {{ url: "http://127.0.0.1:{everything}/mcp" }}
  - id: sdk
    http: {{ url: "http://127.0.0.1:{sdk_port}/mcp" }}
namespacing: {{ prefix: never }}
"""
    replicas = []
    for i in range(3):
        workdir = tmp_path / f"replica{i}"
        workdir.mkdir()
        replicas.append(start_gateway(config, workdir))
    nginx, balancer = start_nginx(tmp_path, [r.port for r in replicas])
    return Cluster(replicas, balancer, redis, nginx, tmp_path, [sdk])


def stop_cluster(c: Cluster):
    stop(c.nginx)
    for r in c.replicas:
        stop(r.proc)
    stop(c.redis.proc)
    for proc in c.others:
        stop(proc)


def metric(gw: Gateway, series: str) -> float:
    with urllib.request.urlopen(gw.admin + "/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(series):
            total += float(line.rsplit(" ", 1)[1])
    return total


def calls_served(gw: Gateway) -> float:
    return metric(gw, 'mcpgate_requests_total{method="tools/call"')


VERSION = "2025-11-25"


def legacy_open(gw: Gateway) -> str:
    init = post(gw, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "scale-e2e", "version": "0"}}})
    assert init.status == 200, init.raw
    sid = init.headers["mcp-session-id"]
    assert post(gw, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"Mcp-Session-Id": sid, "MCP-Protocol-Version": VERSION}).status == 202
    return sid


def echo(gw: Gateway, sid: str, i: int):
    return post(gw, {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                     "params": {"name": "echo", "arguments": {"message": f"m{i}"}}},
                {"Mcp-Session-Id": sid, "MCP-Protocol-Version": VERSION})


def answer_of(reply) -> dict:
    """The JSON-RPC message of a reply, JSON or a one-event SSE stream."""
    if reply.body is not None and "jsonrpc" in reply.body:
        return reply.body
    for line in reply.raw.decode().splitlines():
        if line.startswith("data:") and line[5:].strip():
            return json.loads(line[5:])
    raise AssertionError(reply.raw)


def test_the_typescript_sdk_client_is_served_across_replicas_and_one_may_die(cluster):
    done = subprocess.run(["node", str(E2E / "ts_replicas_client.mjs"), cluster.balancer.url, "9"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["echoes"] == [f"Echo: ts {i}" for i in range(9)]
    assert "echo" in seen["tools"]
    # No stickiness: every replica served some of the session's calls.
    served = [calls_served(r) for r in cluster.replicas]
    assert all(n > 0 for n in served), served

    # A replica dies mid-session: the session carries on through the others.
    sid = legacy_open(cluster.balancer)
    for i in range(6):
        assert answer_of(echo(cluster.balancer, sid, i))["result"]["content"][0]["text"] == f"Echo: m{i}"
    os.kill(cluster.replicas[1].proc.pid, signal.SIGKILL)
    cluster.replicas[1].proc.wait()
    for i in range(6, 18):
        reply = echo(cluster.balancer, sid, i)
        assert reply.status == 200, reply.raw
        assert answer_of(reply)["result"]["content"][0]["text"] == f"Echo: m{i}"


def test_a_delete_through_the_balancer_ends_the_session_on_every_replica(cluster):
    sid = legacy_open(cluster.balancer)
    for r in cluster.replicas:
        assert echo(r, sid, 1).status == 200, "any replica serves the session"
    from harness import request
    gone = request(cluster.balancer, "DELETE", None,
                   {"Mcp-Session-Id": sid, "MCP-Protocol-Version": VERSION})
    assert gone.status == 200, gone.raw
    deadline = time.monotonic() + 5
    for r in cluster.replicas:
        while (status := echo(r, sid, 2).status) != 404:
            assert time.monotonic() < deadline, f"replica {r.url} still serves the ended session ({status})"
            time.sleep(0.05)


def burst(gw: Gateway, sid: str, n: int) -> tuple[int, int]:
    """Sends n calls at once-ish; returns (admitted, refused by a rate limit)."""
    admitted = refused = 0
    for i in range(n):
        reply = echo(gw, sid, 100 + i)
        if reply.status == 429:
            refused += 1
            assert reply.body["error"]["data"]["limit"] == "per_principal", reply.body
        else:
            assert reply.status == 200, reply.raw
            assert "result" in answer_of(reply)
            admitted += 1
    return admitted, refused


def test_a_per_principal_limit_holds_across_replicas_and_through_a_redis_outage(cluster):
    sid = legacy_open(cluster.balancer)
    before = [calls_served(r) for r in cluster.replicas]
    admitted, refused = burst(cluster.balancer, sid, 45)
    # N per minute across the three replicas together, within 5 % (cells refill as it runs).
    assert abs(admitted - LIMIT) <= LIMIT * 0.05, (admitted, refused)
    after = [calls_served(r) for r in cluster.replicas]
    assert all(a > b for a, b in zip(after, before)), "every replica took part"

    # Redis down: fail_open lets calls through, and each replica counts them.
    cluster.redis.proc.kill()
    cluster.redis.proc.wait()
    admitted, refused = burst(cluster.balancer, sid, 9)
    assert (admitted, refused) == (9, 0)
    assert sum(metric(r, 'mcpgate_rate_limit_store_errors_total{outcome="admitted"}')
               for r in cluster.replicas) >= 9

    # Redis back (empty): the limit holds again, without a restart. Each replica is asked
    # directly until a call of its own no longer counts as a store error.
    cluster.redis = start_redis(cluster.redis.port)
    used = 0
    for r in cluster.replicas:
        assert reaches_the_store(r, sid), f"{r.url} did not reach Redis again"
        used += 1
    admitted, refused = burst(cluster.balancer, sid, 45)
    assert abs(admitted + used - LIMIT) <= LIMIT * 0.05, (admitted, used, refused)
    assert refused > 0, "the limit is enforced again"


def test_the_python_sdk_modern_client_completes_an_elicitation_whose_retry_lands_elsewhere(cluster):
    """Round robin sends each MRTR retry to the replica after the one that parked the call: the
    retry is handed to the owner over Redis and its answer comes back the same way."""
    import anyio
    import mcp.types as types
    from mcp import Client

    asked = []

    async def elicit(context, params):
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Grace Hopper", "check": True})

    answered = 'mcpgate_mrtr_handoffs_total{outcome="answered"}'
    before = sum(metric(r, answered) for r in cluster.replicas)

    async def run():
        async with Client(cluster.balancer.url, elicitation_callback=elicit) as client:
            assert client.protocol_version == "2026-07-28"
            for _ in range(3):
                result = await client.call_tool("trigger-elicitation-request", {})
                text = json.dumps([c.model_dump(mode="json") for c in result.content])
                assert "Grace Hopper" in text, text

    anyio.run(run)
    assert len(asked) == 3, asked
    handed = sum(metric(r, answered) for r in cluster.replicas) - before
    # With strict round robin and nothing between a call and its retry, every retry lands on
    # the next replica; a request of the SDK's own in between could bring one home.
    assert handed >= 2, handed
    gone = sum(metric(r, 'mcpgate_mrtr_handoffs_total{outcome="owner_gone"}') for r in cluster.replicas)
    assert gone == 0


def test_the_typescript_sdk_client_resumes_a_cut_stream_on_another_replica(cluster):
    steps = 8
    client = subprocess.Popen(["node", str(E2E / "ts_resume_client.mjs"), cluster.balancer.url, str(steps)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(client.stdout.readline())
        assert first == {"progress": 1}, first
        streaming = 'mcpgate_open_streams{era="legacy",kind="response"}'
        sender = [r for r in cluster.replicas if metric(r, streaming) > 0]
        assert len(sender) == 1, [metric(r, streaming) for r in cluster.replicas]
        # The balancer restarts without the sender: the stream's connection is cut, and the
        # client's reconnection can only reach the other replicas.
        os.kill(cluster.nginx.pid, signal.SIGKILL)
        cluster.nginx.wait()
        others = [r.port for r in cluster.replicas if r is not sender[0]]
        cluster.nginx, _ = start_nginx(cluster.workdir, others, cluster.balancer.port, "nginx-2")
        out, err = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 0, out + err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["progress"] == list(range(1, steps + 1)), summary
    assert "completed" in summary["text"].lower(), summary


def publishes(redis: Redis) -> int:
    """PUBLISH commands Redis has run (INFO commandstats)."""
    stats = subprocess.run(["redis-cli", "-p", str(redis.port), "info", "commandstats"],
                           capture_output=True, text=True, check=True).stdout
    found = re.search(r"cmdstat_publish:calls=(\d+)", stats)
    return int(found.group(1)) if found else 0


def test_the_typescript_sdk_client_hears_resource_updates_across_replicas(cluster):
    touches = 4
    published = publishes(cluster.redis)
    done = subprocess.run(["node", str(E2E / "ts_subscribe_client.mjs"), cluster.balancer.url,
                           "note://board", str(touches)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["uri"].endswith("note://board"), seen
    assert seen["updates"] == [seen["uri"]] * touches, seen
    # Round robin put the subscribe and the stream on different replicas: every update went
    # through Redis (plus the subscription's own note).
    assert publishes(cluster.redis) - published >= touches + 1
    standalone = 'mcpgate_open_streams{era="legacy",kind="standalone"}'
    assert sum(metric(r, standalone) for r in cluster.replicas) == 0, "the stream closed with the client"


def session_call(gw: Gateway, sid: str, method: str, params: dict, i: int = 1) -> dict:
    return answer_of(post(gw, {"jsonrpc": "2.0", "id": i, "method": method, "params": params},
                          {"Mcp-Session-Id": sid, "MCP-Protocol-Version": VERSION}))


def test_a_task_of_a_session_scoped_upstream_is_followed_through_every_replica(cluster):
    """server-everything keeps tasks per upstream session: every replica talks to it in the
    client session's one upstream session, so the task made through one replica is listed, polled
    and collected through the others."""
    replicas = cluster.replicas
    sid = legacy_open(replicas[0])
    created = session_call(replicas[0], sid, "tools/call", {
        "name": "simulate-research-query", "arguments": {"topic": "gateways", "ambiguous": False},
        "task": {"ttl": 60000}})
    task_id = created["result"]["task"]["taskId"]
    for r in replicas[1:]:
        listed = session_call(r, sid, "tasks/list", {})
        assert [t["taskId"] for t in listed["result"]["tasks"]] == [task_id], listed
    deadline = time.monotonic() + 30
    status, polls = None, 0
    while status != "completed":
        assert time.monotonic() < deadline, f"task still {status}"
        got = session_call(replicas[1 + polls % 2], sid, "tasks/get", {"taskId": task_id}, polls + 2)
        assert "result" in got, got
        status, polls = got["result"]["status"], polls + 1
        time.sleep(0.2)
    result = session_call(replicas[2], sid, "tasks/result", {"taskId": task_id}, 99)
    assert "gateways" in json.dumps(result["result"]), result
    # The client session's upstream session is the one record in Redis.
    keys = subprocess.run(["redis-cli", "-p", str(cluster.redis.port), "--scan", "--pattern",
                           "mcpgate:upstream-session:*"], capture_output=True, text=True, check=True)
    assert len(keys.stdout.split()) == 1, keys.stdout


def sentinel_master(port: int) -> int:
    """The port of the master the Sentinel on `port` names."""
    out = subprocess.run(["redis-cli", "-p", str(port), "SENTINEL", "get-master-addr-by-name",
                          "mymaster"], capture_output=True, text=True).stdout.split()
    return int(out[1]) if len(out) == 2 else 0


@pytest.fixture
def sentinel_cluster(everything, tmp_path):
    """The cluster with Redis behind a Sentinel: a master, its replica, and a Sentinel that
    fails over 1 s after the master stops answering."""
    master = start_redis()
    replica = start_redis(None, "--replicaof", "127.0.0.1", str(master.port))
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"bind 127.0.0.1\nport {sentinel_port}\ndir {tmp_path}\n"
                    f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
                    "sentinel down-after-milliseconds mymaster 1000\n"
                    "sentinel failover-timeout mymaster 3000\n")
    sentinel = subprocess.Popen(["redis-server", str(conf), "--sentinel"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_for_port(sentinel_port, sentinel)
    c = start_cluster(everything, tmp_path, master,
                      f'url: "redis://mymaster", sentinels: ["redis://127.0.0.1:{sentinel_port}"]')
    c.others += [replica.proc, sentinel]
    yield c, replica, sentinel_port
    stop_cluster(c)


def reaches_the_store(gw: Gateway, sid: str) -> bool:
    """Whether a call through `gw` counts no store error (20 s to get there); that call is
    the one of them the limit counted."""
    errors = 'mcpgate_rate_limit_store_errors_total{outcome="admitted"}'
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        before = metric(gw, errors)
        if echo(gw, sid, 997).status == 200 and metric(gw, errors) == before:
            return True
        time.sleep(0.2)
    return False


def task_listed_elsewhere(c: Cluster) -> bool:
    """A task made through replica 0 is listed through replicas 1 and 2."""
    sid = legacy_open(c.replicas[0])
    created = session_call(c.replicas[0], sid, "tools/call", {
        "name": "simulate-research-query", "arguments": {"topic": "failover", "ambiguous": False},
        "task": {"ttl": 60000}})
    task_id = created["result"]["task"]["taskId"]
    return all([t["taskId"] for t in session_call(r, sid, "tasks/list", {})["result"]["tasks"]]
               == [task_id] for r in c.replicas[1:])


def test_the_replicas_follow_the_redis_master_through_a_sentinel_failover(sentinel_cluster):
    c, replica, sentinel_port = sentinel_cluster
    assert sentinel_master(sentinel_port) == c.redis.port
    sid = legacy_open(c.balancer)
    assert all(reaches_the_store(r, sid) for r in c.replicas)
    assert task_listed_elsewhere(c)

    # The master dies; the Sentinel promotes the replica.
    c.redis.proc.kill()
    c.redis.proc.wait()
    deadline = time.monotonic() + 30
    while sentinel_master(sentinel_port) != replica.port:
        assert time.monotonic() < deadline, "the Sentinel did not fail over"
        time.sleep(0.2)

    # Every replica finds the new master by itself, and everything shared works through it.
    for r in c.replicas:
        assert reaches_the_store(r, sid), f"{r.url} did not follow the new master"
    assert task_listed_elsewhere(c), "upstream sessions shared through the new master"
    admitted, refused = burst(c.balancer, sid, 45)
    assert refused > 0, "the limit is enforced on the new master"
    from harness import request
    gone = request(c.replicas[0], "DELETE", None,
                   {"Mcp-Session-Id": sid, "MCP-Protocol-Version": VERSION})
    assert gone.status == 200, gone.raw
    deadline = time.monotonic() + 10
    for r in c.replicas:
        while echo(r, sid, 2).status != 404:
            assert time.monotonic() < deadline, f"{r.url} still serves the ended session"
            time.sleep(0.1)
