// The official TypeScript SDK client (legacy era, Streamable HTTP) calls a long-running tool
// with progress and keeps its response stream alive across a lost connection: when the stream
// breaks after events with ids, the SDK reconnects with GET and Last-Event-ID (any replica may
// answer). Usage: node ts_resume_client.mjs <mcp url> <steps>. Prints one JSON line per
// progress notification ({"progress": n}) as it arrives, then a summary line
// ({"progress": [...], "text": "..."}); exits non-zero on failure.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = new URL(process.argv[2]);
const steps = Number(process.argv[3] ?? "8");
const client = new Client({ name: "mcpgate-e2e-resume", version: "1.0.0" }, { capabilities: {} });
const transport = new StreamableHTTPClientTransport(url, {
  reconnectionOptions: {
    initialReconnectionDelay: 300,
    maxReconnectionDelay: 2000,
    reconnectionDelayGrowFactor: 1.5,
    maxRetries: 10,
  },
});
await client.connect(transport);
const progress = [];
const result = await client.callTool(
  { name: "trigger-long-running-operation", arguments: { duration: steps, steps } },
  undefined,
  {
    timeout: 120000,
    onprogress: (p) => {
      progress.push(p.progress);
      console.log(JSON.stringify({ progress: p.progress }));
    },
  },
);
await client.close();
console.log(JSON.stringify({ progress, text: result.content[0].text }));
