// /docs: the API described from /openapi.json by this small script. FastAPI's own /docs (Swagger UI) loads its
// scripts from a CDN, which the server's Content-Security-Policy blocks and an offline machine cannot reach.

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

function resolve(schema, spec, seen = new Set()) {
  if (schema && schema.$ref && !seen.has(schema.$ref)) {
    seen.add(schema.$ref);
    const target = schema.$ref.replace(/^#\//, "").split("/").reduce((o, k) => (o ? o[k] : undefined), spec);
    return resolve(target || {}, spec, seen);
  }
  return schema || {};
}

// One line per field: name, type, and what limits or describes it; nested objects indented.
function schemaLines(schema, spec, indent = "", required = []) {
  schema = resolve(schema, spec);
  const props = schema.properties || {};
  const lines = [];
  for (const [name, s0] of Object.entries(props)) {
    const s = resolve(s0, spec);
    const type = s.type === "array" ? `array of ${resolve(s.items, spec).type || "values"}`
      : s.format ? `${s.type} (${s.format})` : s.type || (s.anyOf ? s.anyOf.map((a) => resolve(a, spec).type).join(" | ") : "any");
    const notes = [required.includes(name) || (schema.required || []).includes(name) ? "required" : "",
                   s.maxLength ? `at most ${s.maxLength} characters` : "", s.description || ""].filter(Boolean);
    lines.push(`${indent}${name}: ${type}${notes.length ? "  — " + notes.join("; ") : ""}`);
    if (s.properties) lines.push(...schemaLines(s, spec, indent + "  "));
  }
  if (!lines.length && schema.type) lines.push(`${indent}${schema.type}${schema.additionalProperties ? " (any keys)" : ""}`);
  return lines;
}

function parametersTable(params, spec) {
  const rows = params.map((p) => el("tr", {}, el("td", {}, el("code", { textContent: p.name })),
                                    el("td", { textContent: p.in }),
                                    el("td", { textContent: resolve(p.schema, spec).type || "" }),
                                    el("td", { textContent: (p.required ? "required. " : "") + (p.description || "") })));
  return el("table", {}, el("tr", {}, ...["name", "in", "type", "about"].map((h) => el("th", { textContent: h }))), ...rows);
}

function curlFor(method, path, body) {
  const host = `${location.protocol}//${location.host}`;
  if (body && body.content && body.content["multipart/form-data"]) {
    return `curl -s -F file=@video.mp4 -F text="what is said" ${host}${path}`;
  }
  if (body && body.content && body.content["image/jpeg"]) {
    return `curl -s -H "Content-Type: image/jpeg" --data-binary @face.jpg ${host}${path}`;
  }
  return `curl -s ${method === "get" ? "" : "-X " + method.toUpperCase() + " "}${host}${path}`;
}

function operation(method, path, op, spec) {
  const id = `op-${method}-${path.replace(/[^a-z0-9]+/gi, "-").replace(/^-|-$/g, "")}`;
  const box = el("section", { className: "op", id });
  box.dataset.method = method;
  box.dataset.path = path;
  box.append(el("h2", {}, el("span", { className: "method " + method, textContent: method }),
                el("code", { textContent: path }), el("span", { textContent: op.summary || "" })));
  if (op.description) box.append(el("p", { textContent: op.description }));
  if (op.parameters && op.parameters.length) box.append(el("h3", { textContent: "Parameters" }), parametersTable(op.parameters, spec));
  const body = op.requestBody;
  if (body) {
    for (const [kind, media] of Object.entries(body.content || {})) {
      box.append(el("h3", { textContent: `Request body (${kind})` }),
                 el("pre", { textContent: schemaLines(media.schema, spec).join("\n") }));
    }
  }
  box.append(el("h3", { textContent: "Example" }), el("pre", { textContent: curlFor(method, path, body) }));
  const rows = Object.entries(op.responses || {}).map(([code, r]) => {
    const schema = r.content && r.content["application/json"] && r.content["application/json"].schema;
    const fields = schema ? schemaLines(schema, spec).join("\n") : "";
    return el("tr", {}, el("td", {}, el("code", { textContent: code })), el("td", { textContent: r.description || "" }),
              el("td", {}, fields ? el("pre", { textContent: fields }) : ""));
  });
  box.append(el("h3", { textContent: "Responses" }),
             el("table", {}, el("tr", {}, ...["status", "meaning", "body"].map((h) => el("th", { textContent: h }))), ...rows));
  return box;
}

async function main() {
  let spec;
  try {
    spec = await (await fetch("/openapi.json")).json();
  } catch (e) {
    $("api-status").textContent = "Could not load /openapi.json from the server.";
    return;
  }
  $("api-title").textContent = `${spec.info.title} API` + (spec.info.version ? ` (version ${spec.info.version})` : "");
  $("api-description").textContent = spec.info.description || "";
  const ops = Object.entries(spec.paths || {}).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => [method, path, op]));
  ops.sort((a, b) => Number(Boolean(b[2].requestBody)) - Number(Boolean(a[2].requestBody)));  // uploads first
  const boxes = [];
  for (const [method, path, op] of ops) {
    const box = operation(method, path, op, spec);
    boxes.push(box);
    $("api-index").append(el("a", { href: "#" + box.id, textContent: `${method.toUpperCase()} ${path}` }));
  }
  $("api-paths").replaceChildren(...boxes);
  document.body.dataset.operations = String(boxes.length);
}

main();
