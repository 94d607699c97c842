// The official TypeScript SDK client (legacy era, Streamable HTTP) through a load balancer in
// front of several mcpgate replicas: initialize, list tools, then call `echo` N times (each
// request may reach another replica). Usage: node ts_replicas_client.mjs <mcp url> <N>.
// Exits non-zero on the first failure; prints a JSON summary of what it saw.
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = new URL(process.argv[2]);
const calls = Number(process.argv[3] ?? "6");
const client = new Client({ name: "mcpgate-e2e-replicas", version: "1.0.0" }, { capabilities: {} });
const transport = new StreamableHTTPClientTransport(url);
await client.connect(transport);
assert.ok(transport.sessionId, "a legacy session id");
const { tools } = await client.listTools();
const echoes = [];
for (let i = 0; i < calls; i++) {
  const result = await client.callTool({ name: "echo", arguments: { message: `ts ${i}` } });
  assert.ok(!result.isError, JSON.stringify(result));
  echoes.push(result.content[0].text);
}
await client.close();
console.log(JSON.stringify({ session: transport.sessionId, tools: tools.map((t) => t.name), echoes }));
