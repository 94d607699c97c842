#!/usr/bin/env node
// Extracts the official MCP JSON schemas that the conformance suite (npm
// @modelcontextprotocol/conformance) bundles for its wire-schema checks, and writes each as
// <out>/<version>/schema.json, so the Rust tests validate what the gateway emits against them
// without any file from outside this repository.
//
// The bundle keeps the schemas in a map from revision to object literal, e.g.
// `Re={"2025-03-26":Pe,...,[A]:Le}` with `A=`2026-07-28``: the map is found by its shape, each
// name resolved to its `{$schema:...}` literal, and each literal evaluated on its own (a plain
// literal: no code of the bundle runs). A literal is kept when it is an MCP schema (it defines
// JSONRPCRequest).
//
// Usage: node scripts/extract-mcp-schemas.mjs <conformance package dir> <out dir>

import fs from "node:fs";
import path from "node:path";
import vm from "node:vm";

const [pkg, out] = process.argv.slice(2);
if (!pkg || !out) {
  console.error("usage: extract-mcp-schemas.mjs <conformance package dir> <out dir>");
  process.exit(2);
}
const bundle = fs.readFileSync(path.join(pkg, "dist", "index.js"), "utf8");

// The index just past the literal that opens at `start` (a `{`): strings, template literals
// (with nested `${...}`) and brackets are skipped as JavaScript reads them.
function literalEnd(src, start) {
  let depth = 0;
  let i = start;
  const skipQuoted = (quote) => {
    i++;
    while (i < src.length && src[i] !== quote) {
      i += src[i] === "\\" ? 2 : 1;
    }
    i++;
  };
  const skipTemplate = () => {
    i++;
    while (i < src.length && src[i] !== "`") {
      if (src[i] === "\\") {
        i += 2;
      } else if (src[i] === "$" && src[i + 1] === "{") {
        i = literalEnd(src, i + 1);
      } else {
        i++;
      }
    }
    i++;
  };
  while (i < src.length) {
    const c = src[i];
    if (c === '"' || c === "'") {
      skipQuoted(c);
      continue;
    }
    if (c === "`") {
      skipTemplate();
      continue;
    }
    if (c === "{" || c === "[" || c === "(") depth++;
    if (c === "}" || c === "]" || c === ")") {
      depth--;
      if (depth === 0) return i + 1;
    }
    i++;
  }
  throw new Error(`unterminated literal at ${start}`);
}

const DATE = String.raw`\d{4}-\d{2}-\d{2}`;
const KEY = String.raw`(?:"${DATE}"|\[[\w$]+\])`;
const map = bundle.match(new RegExp(String.raw`=\{(${KEY}:[\w$]+(?:,${KEY}:[\w$]+)+)\}`));
if (!map) {
  console.error(`no schema map found in ${pkg}`);
  process.exit(1);
}
// The value of a minified constant holding a revision string, e.g. A=`2026-07-28`.
const constant = (name) =>
  bundle.match(new RegExp(String.raw`[,;{\s]${name.replace("$", "\\$")}=[\x60"'](${DATE})[\x60"']`))?.[1];
const found = new Map();
for (const entry of map[1].split(",")) {
  const [key, name] = entry.split(":");
  const version = key.startsWith("[") ? constant(key.slice(1, -1)) : key.slice(1, -1);
  const at = bundle.search(new RegExp(String.raw`[,;\s]${name.replace("$", "\\$")}=\{\$schema:`));
  if (!version || at === -1) continue;
  const open = bundle.indexOf("{", at);
  const schema = vm.runInNewContext(`(${bundle.slice(open, literalEnd(bundle, open))})`, {}, { timeout: 1000 });
  const defs = schema.$defs ?? schema.definitions;
  if (!defs?.JSONRPCRequest) continue;
  // The suite's own fix before it validates: NumberSchema bounds and default are numbers (the
  // bundled literals of some revisions say integer).
  for (const key of ["minimum", "maximum", "default"]) {
    const property = defs.NumberSchema?.properties?.[key];
    if (property?.type === "integer") property.type = "number";
  }
  found.set(version, schema);
}
if (found.size === 0) {
  console.error(`no MCP schema found in ${pkg}`);
  process.exit(1);
}
for (const [version, schema] of found) {
  const dir = path.join(out, version);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "schema.json"), JSON.stringify(schema, null, 2) + "\n");
}
console.error(`extract-mcp-schemas: ${[...found.keys()].sort().join(", ")} -> ${out}`);
