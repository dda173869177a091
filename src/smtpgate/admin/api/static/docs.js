// The API explorer: renders /api/v1/openapi.json and sends requests with the page's token.
"use strict";

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
};

function resolve(spec, schema) {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 20) schema = spec.components.schemas[schema.$ref.split("/").pop()];
  return schema || {};
}

function example(spec, schema, depth = 0) {
  schema = resolve(spec, schema);
  if (depth > 4) return null;
  if (schema.default !== undefined) return schema.default;
  if (schema.enum) return schema.enum[0];
  if (schema.anyOf) return example(spec, schema.anyOf.find((s) => s.type !== "null") || schema.anyOf[0], depth + 1);
  switch (schema.type) {
    case "object": {
      const out = {};
      for (const [name, prop] of Object.entries(schema.properties || {})) {
        if ((schema.required || []).includes(name)) out[name] = example(spec, prop, depth + 1);
      }
      return out;
    }
    case "array": return [];
    case "integer": case "number": return schema.minimum || 0;
    case "boolean": return false;
    default: return "";
  }
}

function route(spec, path, method, op) {
  const params = (op.parameters || []).map((p) => ({ ...p, schema: resolve(spec, p.schema) }));
  const body = op.requestBody && op.requestBody.content["application/json"];
  const inputs = {};
  const form = el("form");
  if (params.length) {
    const table = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "value")));
    for (const p of params) {
      const input = el("input", { name: p.name, placeholder: p.required ? "required" : "optional" });
      inputs[p.name] = [p, input];
      table.append(el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, input)));
    }
    form.append(table);
  }
  let textarea = null;
  if (body) {
    textarea = el("textarea", { name: "body" });
    textarea.value = JSON.stringify(example(spec, body.schema), null, 2);
    form.append(el("p", {}, "JSON body:"), textarea);
  }
  const output = el("pre", { hidden: "" });
  form.append(el("button", { type: "submit" }, "Send"), output);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let url = path;
    const query = new URLSearchParams();
    for (const [name, [p, input]] of Object.entries(inputs)) {
      if (!input.value) continue;
      if (p.in === "path") url = url.replace(`{${name}}`, encodeURIComponent(input.value));
      else if (p.in === "query") query.append(name, input.value);
    }
    if ([...query].length) url += "?" + query;
    const headers = { Accept: "application/json" };
    const token = document.getElementById("token").value.trim();
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method: method.toUpperCase(), headers };
    if (textarea) { headers["Content-Type"] = "application/json"; init.body = textarea.value; }
    output.hidden = false;
    output.textContent = "...";
    try {
      const response = await fetch(url, init);
      const text = await response.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
      output.textContent = `${response.status} ${response.statusText}\n\n${shown}`;
    } catch (error) {
      output.textContent = String(error);
    }
  });
  const responses = el("table", {}, ...Object.entries(op.responses || {}).map(([status, r]) =>
    el("tr", {}, el("td", { class: "status" }, status), el("td", {}, r.description || ""))));
  return el("details", { class: "route", id: op.operationId || "" },
    el("summary", {}, el("span", { class: "method " + method }, method.toUpperCase()), " ", el("code", {}, path),
      " ", op.summary || ""),
    el("p", {}, op.description || ""), form, el("h4", {}, "Responses"), responses);
}

async function main() {
  const spec = await (await fetch("/api/v1/openapi.json")).json();
  document.getElementById("version").textContent = spec.info.version;
  const byTag = new Map();
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(route(spec, path, method, op));
    }
  }
  const main = document.getElementById("routes");
  const toc = document.getElementById("toc");
  main.replaceChildren();
  for (const [tag, routes] of byTag) {
    const id = "tag-" + tag.replace(/\W+/g, "-");
    toc.append(el("a", { href: "#" + id }, tag), " ");
    main.append(el("h2", { id }, tag), ...routes);
  }
}

main().catch((error) => { document.getElementById("loading").textContent = "Could not load the API: " + error; });
