// The official TypeScript SDK client (legacy era, Streamable HTTP) against mcpgate.
// Usage: node ts_client.mjs <mcp url>. Exits non-zero on the first failed check and prints a
// JSON summary of what it saw on success.
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ResourceUpdatedNotificationSchema,
  ToolListChangedNotificationSchema,
  CreateTaskResultSchema,
  GetTaskResultSchema,
  CallToolResultSchema,
  ListTasksResultSchema,
} from "@modelcontextprotocol/sdk/types.js";

const url = new URL(process.argv[2]);
const client = new Client(
  { name: "mcpgate-e2e-ts", version: "1.0.0" },
  { capabilities: { elicitation: { form: {} }, sampling: {} } },
);
const elicitations = [];
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  elicitations.push(request.params.message);
  return { action: "accept", content: { name: "Ada Lovelace", check: true, email: "ada@example.com" } };
});
client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
  role: "assistant",
  model: "gateway-test-model",
  content: { type: "text", text: `sampled: ${JSON.stringify(request.params.messages[0].content.text ?? "")}` },
}));
const transport = new StreamableHTTPClientTransport(url);
await client.connect(transport);

async function all(method, key) {
  const items = [];
  let cursor;
  let pages = 0;
  do {
    const page = await client[method](cursor ? { cursor } : undefined);
    items.push(...page[key]);
    cursor = page.nextCursor;
    pages += 1;
  } while (cursor);
  return { items, pages };
}

const seen = { protocolVersion: transport.protocolVersion, sessionId: Boolean(transport.sessionId) };
assert.equal(client.getServerVersion().name, "mcpgate");
assert.ok(transport.sessionId, "a legacy session id was issued");

const tools = await all("listTools", "tools");
const names = tools.items.map((t) => t.name);
for (const n of ["time__get_current_time", "time__convert_time", "everything__get-sum", "everything__echo", "memory__read_graph", "memory__create_entities"]) {
  assert.ok(names.includes(n), `tools/list has ${n}`);
}
assert.ok(!names.some((n) => n.startsWith("ghost__")), "a down upstream contributes nothing");
assert.ok(tools.pages > 1, "tools/list was paged");
assert.equal(new Set(names).size, names.length, "no duplicates across pages");
seen.tools = names.length;
seen.toolPages = tools.pages;

const prompts = await all("listPrompts", "prompts");
assert.ok(prompts.items.some((p) => p.name === "everything__simple-prompt"));
const resources = await all("listResources", "resources");
assert.ok(resources.items.some((r) => r.uri === "memory+memory://knowledge-graph") || resources.items.some((r) => r.uri.startsWith("everything+demo://")));
assert.ok(resources.items.every((r) => /^(everything|memory|time)\+/.test(r.uri)), "every resource URI is namespaced");
const templates = await all("listResourceTemplates", "resourceTemplates");
assert.ok(templates.items.some((t) => t.uriTemplate === "everything+demo://resource/dynamic/text/{resourceId}"));
seen.prompts = prompts.items.length;
seen.resources = resources.items.length;
seen.templates = templates.items.length;

const time = await client.callTool({ name: "time__get_current_time", arguments: { timezone: "Asia/Tokyo" } });
assert.equal(time.isError ?? false, false);
assert.equal(time.structuredContent.timezone, "Asia/Tokyo");
const sum = await client.callTool({ name: "everything__get-sum", arguments: { a: 20, b: 22 } });
assert.match(sum.content[0].text, /42/);
await client.callTool({ name: "memory__create_entities", arguments: { entities: [{ name: "mcpgate-ts", entityType: "test", observations: ["seen through the gateway"] }] } });
const graph = await client.callTool({ name: "memory__read_graph", arguments: {} });
assert.match(graph.content[0].text, /mcpgate-ts/);

const read = await client.readResource({ uri: "everything+demo://resource/dynamic/text/7" });
assert.equal(read.contents[0].uri, "everything+demo://resource/dynamic/text/7");
assert.match(read.contents[0].text, /Resource 7/);
const prompt = await client.getPrompt({ name: "everything__args-prompt", arguments: { city: "Lisbon" } });
assert.match(JSON.stringify(prompt.messages), /Lisbon/);
const completion = await client.complete({ ref: { type: "ref/prompt", name: "everything__completable-prompt" }, argument: { name: "department", value: "Eng" } });
assert.deepEqual(completion.completion.values, ["Engineering"]);

// Progress from a real upstream, relayed as it happens.
const progress = [];
const long = await client.callTool(
  { name: "everything__trigger-long-running-operation", arguments: { duration: 1, steps: 4 } },
  undefined,
  { onprogress: (p) => progress.push(p.progress) },
);
assert.match(long.content[0].text, /completed/i);
assert.deepEqual(progress, [1, 2, 3, 4], "every progress notification arrived in order");
seen.progress = progress.length;

// Elicitation and sampling: the upstream asks, this client answers through the gateway.
const elicited = await client.callTool({ name: "everything__trigger-elicitation-request", arguments: {} });
assert.equal(elicitations.length, 1, "the elicitation reached this client");
assert.match(elicited.content.map((c) => c.text).join("\n"), /Ada Lovelace/);
const sampled = await client.callTool({ name: "everything__trigger-sampling-request", arguments: { prompt: "hello gateway", maxTokens: 10 } });
assert.match(JSON.stringify(sampled.content), /sampled:/);
assert.match(JSON.stringify(sampled.content), /gateway-test-model/);
seen.elicitations = elicitations.length;

// Resource subscriptions: the update arrives on this session's standalone stream with the
// client-facing URI.
const updates = [];
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => updates.push(n.params.uri));
client.setNotificationHandler(ToolListChangedNotificationSchema, () => {});
const watched = "everything+demo://resource/static/document/architecture.md";
await client.subscribeResource({ uri: watched });
await client.callTool({ name: "everything__toggle-subscriber-updates", arguments: {} });
const deadline = Date.now() + 15000;
while (updates.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
await client.callTool({ name: "everything__toggle-subscriber-updates", arguments: {} });
assert.ok(updates.length > 0, "a resource update arrived");
assert.equal(updates[0], watched);
await client.unsubscribeResource({ uri: watched });
seen.resourceUpdates = updates.length;

// Tasks: created by a real upstream, polled and fetched through the gateway with namespaced ids.
assert.ok(client.getServerCapabilities().tasks, "task support is advertised because it is relayed");
const created = await client.request(
  { method: "tools/call", params: { name: "everything__simulate-research-query", arguments: { topic: "gateways", ambiguous: false }, task: { ttl: 60000 } } },
  CreateTaskResultSchema,
);
const taskId = created.task.taskId;
assert.match(taskId, /^everything\+/);
let task;
const taskDeadline = Date.now() + 30000;
do {
  await new Promise((r) => setTimeout(r, 250));
  task = await client.request({ method: "tasks/get", params: { taskId } }, GetTaskResultSchema);
} while (task.status !== "completed" && Date.now() < taskDeadline);
assert.equal(task.status, "completed");
assert.equal(task.taskId, taskId);
const payload = await client.request({ method: "tasks/result", params: { taskId } }, CallToolResultSchema);
assert.match(payload.content[0].text, /gateways/);
const listed = await client.request({ method: "tasks/list", params: {} }, ListTasksResultSchema);
assert.ok(listed.tasks.some((t) => t.taskId === taskId), "tasks/list is merged and namespaced");
seen.task = task.status;

let unknown;
try {
  await client.callTool({ name: "nope__missing", arguments: {} });
} catch (e) {
  unknown = e;
}
assert.ok(unknown, "an unknown tool is an error");
assert.equal(unknown.code, -32602);

await transport.terminateSession();
await client.close();
console.log(JSON.stringify(seen));
