// The gqlbatch playground: runs a batch through /graphql and draws its waterfall.
// Plain browser JavaScript, no framework and nothing from a CDN. Item data is only ever
// written with textContent, never parsed as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const ROW = 24;
const LABEL = 110;
const TOP = 24;
const ITEM_FIELDS = `requestId state status durationMs startedMs attempts coalesced bulkCall
  headers { name value } body error { code message } elements { index status coalesced bulkCall }`;
const runQuery = (typed) => `mutation Playground($r: [SubRequestInput!]!) {
  batch(requests: $r) {
    items { ${ITEM_FIELDS}${typed ? " ... on Succeeded { data { __typename } }" : ""} }
    stats { subRequests upstreamCalls savedByDedupe savedByBulk wallMs criticalPathMs }
  }
}`;
// The types `data` can be, by name, with their fields: empty when no upstream has an OpenAPI
// document (the schema then has no `data`) or introspection is off.
const TYPED_BODY = `{ __type(name: "TypedBody") { possibleTypes { name fields { name type {
  kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }`;
let answerTypes = new Map();

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------
// What to send

function toSubRequest(item) {
  // A REST batch item ({id, method, url, headers: {...}, body}) as a SubRequestInput.
  if (!("url" in item) && !("id" in item)) return item;
  const [path, search] = String(item.url || item.path || "/").split("?", 2);
  const sub = { requestId: item.id ?? item.requestId, path };
  if (item.method) sub.method = String(item.method).toUpperCase();
  if (search) {
    const query = {};
    for (const [name, value] of new URLSearchParams(search)) {
      query[name] = name in query ? [].concat(query[name], value) : value;
    }
    sub.query = query;
  }
  if (item.headers && !Array.isArray(item.headers)) {
    sub.headers = Object.entries(item.headers).map(([name, value]) => ({ name, value: String(value) }));
  } else if (item.headers) {
    sub.headers = item.headers;
  }
  for (const key of ["body", "dependsOn", "forEach", "upstream", "idempotencyKey"]) {
    if (key in item) sub[key] = item[key];
  }
  return sub;
}

function operationFor(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith("[") || trimmed.startsWith("{\"") || trimmed.startsWith("{\n")) {
    let parsed;
    try {
      parsed = JSON.parse(trimmed);
    } catch (error) {
      if (trimmed.startsWith("[")) throw new Error(`not valid JSON: ${error.message}`);
      parsed = null; // a GraphQL selection set, such as "{ batch(...) }"
    }
    if (parsed !== null) {
      const list = Array.isArray(parsed) ? parsed : parsed.requests || parsed.batch;
      if (!Array.isArray(list)) throw new Error("a JSON batch is a list, or {\"requests\": [...]}");
      const requests = list.map(toSubRequest);
      return { body: { query: runQuery(answerTypes.size > 0), variables: { r: requests } }, requests };
    }
  }
  return { body: { query: trimmed }, requests: null };
}

// ---------------------------------------------------------------------------------------
// What came back

function findBatches(value, found = []) {
  // Every object in the answer that has `items` with timings: the batches it selected.
  if (Array.isArray(value)) {
    value.forEach((v) => findBatches(v, found));
  } else if (value && typeof value === "object") {
    if (Array.isArray(value.items) && value.items.some((i) => i && "startedMs" in i)) {
      found.push(value);
    }
    Object.values(value).forEach((v) => findBatches(v, found));
  }
  return found;
}

function dependenciesOf(requests) {
  // requestId -> the ids it waits for: dependsOn, and every resultOf(...) it references.
  const deps = new Map();
  if (!requests) return deps;
  for (const request of requests) {
    const ids = new Set(request.dependsOn || []);
    for (const match of JSON.stringify(request).matchAll(/resultOf\(([^)]+)\)/g)) {
      ids.add(match[1].trim());
    }
    ids.delete(request.requestId);
    deps.set(String(request.requestId), [...ids]);
  }
  return deps;
}

function criticalPath(items, deps) {
  // From the item that ends last, back through the dependency that ended last each time.
  const byId = new Map(items.map((i) => [String(i.requestId), i]));
  const end = (i) => i.startedMs + i.durationMs;
  let current = items.reduce((a, b) => (end(b) > end(a) ? b : a), items[0]);
  const path = new Set();
  while (current && !path.has(String(current.requestId))) {
    path.add(String(current.requestId));
    const before = (deps.get(String(current.requestId)) || []).map((d) => byId.get(d)).filter(Boolean);
    current = before.length ? before.reduce((a, b) => (end(b) > end(a) ? b : a)) : null;
  }
  return path;
}

// ---------------------------------------------------------------------------------------
// Drawing

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function marksOf(item) {
  const elements = item.elements || [];
  const marks = [];
  if (item.coalesced || elements.some((e) => e.coalesced)) marks.push("=");
  if (item.bulkCall || elements.some((e) => e.bulkCall)) marks.push("bulk");
  const calls = elements.length || 1;
  if (item.attempts > calls) marks.push(`↻${item.attempts - calls}`);
  return marks.join(" ");
}

function draw(items, deps) {
  const svg = $("waterfall");
  svg.replaceChildren();
  const width = Math.max(svg.getBoundingClientRect().width || 700, 400);
  const span = Math.max(1, ...items.map((i) => i.startedMs + i.durationMs));
  const scale = (width - LABEL - 60) / span;
  const height = TOP + ROW * items.length + 8;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "xMinYMin meet");
  svg.setAttribute("height", String(height));
  const defs = svgElement("defs", {});
  const marker = svgElement("marker", {
    id: "arrow", viewBox: "0 0 6 6", refX: "6", refY: "3", markerWidth: "6", markerHeight: "6",
    orient: "auto-start-reverse",
  });
  marker.append(svgElement("path", { d: "M0,0 L6,3 L0,6 z", fill: "#7d8594" }));
  defs.append(marker);
  svg.append(defs);
  svg.append(svgElement("line", { class: "axis", x1: LABEL, y1: TOP - 6, x2: width - 20, y2: TOP - 6 }));
  svg.append(svgElement("text", { x: LABEL, y: 14 }, "0 ms"));
  svg.append(svgElement("text", { x: width - 90, y: 14 }, `${span.toFixed(1)} ms`));

  const critical = criticalPath(items, deps);
  const rows = new Map(items.map((item, row) => [String(item.requestId), row]));
  const x = (ms) => LABEL + ms * scale;
  const y = (row) => TOP + row * ROW;
  items.forEach((item, row) => {
    const id = String(item.requestId);
    const state = String(item.state || (item.error ? "FAILED" : "SUCCEEDED")).toLowerCase();
    svg.append(svgElement("text", { x: 4, y: y(row) + 15 }, id));
    const classes = ["bar", state];
    if (critical.has(id)) classes.push("critical");
    const bar = svgElement("rect", {
      class: classes.join(" "), "data-request-id": id,
      x: x(item.startedMs), y: y(row) + 3, width: Math.max(2, item.durationMs * scale), height: ROW - 8,
    });
    bar.append(svgElement("title", {}, `${id}: ${item.status ?? item.state} in ${item.durationMs} ms`));
    bar.addEventListener("click", () => select(bar, item));
    svg.append(bar);
    const marks = marksOf(item);
    if (marks) {
      svg.append(svgElement("text", { class: "mark", x: x(item.startedMs + item.durationMs) + 6, y: y(row) + 15 }, marks));
    }
  });
  for (const [id, before] of deps) {
    const to = items[rows.get(id)];
    for (const dep of before) {
      const from = items[rows.get(dep)];
      if (!from || !to) continue;
      const x1 = x(from.startedMs + from.durationMs);
      const y1 = y(rows.get(dep)) + ROW / 2;
      const x2 = x(to.startedMs);
      const y2 = y(rows.get(id)) + ROW / 2;
      svg.append(svgElement("path", { class: "dependency", d: `M${x1},${y1} C${x1 + 12},${y1} ${x2 - 12},${y2} ${x2},${y2}` }));
    }
  }
}

function select(bar, item) {
  document.querySelectorAll("#waterfall .bar.selected").forEach((b) => b.classList.remove("selected"));
  bar.classList.add("selected");
  $("detail").textContent = typedFields(item) + JSON.stringify(item, null, 2);
}

// "data: User" and each field of the type with its GraphQL type and the answer's value.
function typedFields(item) {
  const type = answerTypes.get(item.data?.__typename);
  if (!type) return "";
  const body = item.body && typeof item.body === "object" && !Array.isArray(item.body) ? item.body : {};
  const lines = type.fields.map((f) => {
    const value = f.name in body ? ` = ${JSON.stringify(body[f.name])}` : "";
    return `  ${f.name}: ${typeName(f.type)}${value}`;
  });
  return `data: ${type.name}\n${lines.join("\n")}\n\n`;
}

function typeName(type) {
  if (type.kind === "NON_NULL") return `${typeName(type.ofType)}!`;
  if (type.kind === "LIST") return `[${typeName(type.ofType)}]`;
  return type.name;
}

async function loadAnswerTypes() {
  try {
    const response = await fetch("/graphql", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ query: TYPED_BODY }),
    });
    const types = (await response.json()).data?.__type?.possibleTypes ?? [];
    answerTypes = new Map(types.map((t) => [t.name, t]));
  } catch {
    answerTypes = new Map();  // the playground works without them
  }
}

// ---------------------------------------------------------------------------------------
// Running

async function run() {
  const status = $("status");
  status.className = "";
  status.textContent = "running…";
  await answerTypesLoaded;
  let operation;
  try {
    operation = operationFor($("batch").value);
  } catch (error) {
    status.className = "error";
    status.textContent = error.message;
    return;
  }
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(operation.body),
  });
  const answer = await response.json();
  const batches = findBatches(answer.data);
  if (answer.errors && !batches.length) {
    status.className = "error";
    status.textContent = answer.errors.map((e) => `${e.extensions?.code ?? "ERROR"}: ${e.message}`).join("; ");
    $("detail").textContent = JSON.stringify(answer, null, 2);
    return;
  }
  if (!batches.length) {
    status.className = "error";
    status.textContent = "nothing to draw: select items { requestId state startedMs durationMs }";
    return;
  }
  const batch = batches[0];
  const stats = batch.stats;
  $("stats").textContent = stats
    ? `${stats.subRequests} sub-requests, ${stats.upstreamCalls} upstream calls ` +
      `(${stats.savedByDedupe} saved by dedupe, ${stats.savedByBulk} by bulk), ` +
      `wall ${stats.wallMs.toFixed(1)} ms, critical path ${stats.criticalPathMs.toFixed(1)} ms`
    : "";
  draw(batch.items, dependenciesOf(operation.requests));
  status.textContent = `${batch.items.length} items`;
}

const answerTypesLoaded = loadAnswerTypes();

$("run").addEventListener("click", () => {
  run().catch((error) => {
    $("status").className = "error";
    $("status").textContent = String(error);
  });
});
