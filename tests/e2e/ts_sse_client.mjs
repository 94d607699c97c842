// The official TypeScript SDK's HTTP+SSE client (protocol revision 2024-11-05) against mcpgate's
// /sse endpoint. Usage: node ts_sse_client.mjs <base url>. Exits non-zero on a failed check.
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const client = new Client({ name: "mcpgate-e2e-sse", version: "1.0.0" }, { capabilities: { elicitation: {} } });
client.setRequestHandler(ElicitRequestSchema, async () => ({ action: "accept", content: { name: "Old Client", check: true } }));
await client.connect(new SSEClientTransport(new URL("/sse", process.argv[2])));
const names = [];
let cursor;
do {
  const page = await client.listTools(cursor ? { cursor } : undefined);
  names.push(...page.tools.map((t) => t.name));
  cursor = page.nextCursor;
} while (cursor);
assert.ok(names.includes("time__get_current_time") && names.includes("everything__get-sum"));
const time = await client.callTool({ name: "time__get_current_time", arguments: { timezone: "UTC" } });
assert.equal(time.structuredContent.timezone, "UTC");
const sum = await client.callTool({ name: "everything__get-sum", arguments: { a: 1, b: 2 } });
assert.match(sum.content[0].text, /3/);
const elicited = await client.callTool({ name: "everything__trigger-elicitation-request", arguments: {} });
assert.match(JSON.stringify(elicited.content), /Old Client/);
await client.close();
console.log(JSON.stringify({ tools: names.length }));
