// The official TypeScript SDK client (legacy era, Streamable HTTP) subscribes to a resource and
// hears its updates on the session's standalone stream, while its requests go to whichever
// replica the balancer picks. Usage: node ts_subscribe_client.mjs <mcp url> <upstream uri> <touches>
// (the client-facing URI is the listed one ending in <upstream uri>).
// Calls the listed tool ending in `touch_board` <touches> times, waits for as many updates (15 s at most), prints a JSON
// summary; exits non-zero on failure.
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ResourceUpdatedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const url = new URL(process.argv[2]);
const upstreamUri = process.argv[3];
const touches = Number(process.argv[4] ?? "3");
const client = new Client({ name: "mcpgate-e2e-subscribe", version: "1.0.0" }, { capabilities: {} });
const updates = [];
let heardAll;
const allHeard = new Promise((resolve) => { heardAll = resolve; });
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
  updates.push(n.params.uri);
  if (updates.length >= touches) heardAll();
});
await client.connect(new StreamableHTTPClientTransport(url));
// Give the standalone stream a moment to open before anything is sent on it.
await new Promise((r) => setTimeout(r, 500));
const { resources } = await client.listResources();
const uri = resources.map((r) => r.uri).find((u) => u.endsWith(upstreamUri));
assert.ok(uri, `no listed resource ends with ${upstreamUri}`);
assert.deepEqual(await client.subscribeResource({ uri }), {});
const { tools } = await client.listTools();
const touch = tools.map((t) => t.name).find((n) => n.endsWith("touch_board"));
for (let i = 0; i < touches; i++) {
  const result = await client.callTool({ name: touch, arguments: {} });
  assert.ok(!result.isError, JSON.stringify(result));
}
let timer;
const timeout = new Promise((_, reject) => {
  timer = setTimeout(() => reject(new Error(`heard ${updates.length} of ${touches} updates`)), 15000);
});
await Promise.race([allHeard, timeout]);
clearTimeout(timer);
await client.close();
console.log(JSON.stringify({ uri, updates }));
