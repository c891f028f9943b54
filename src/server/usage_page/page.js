// The usage page: fetches /usage/data every second and renders it. No framework, no
// build step. A token (read scope) is taken from the URL's fragment (#token=...) or the
// form, kept for this tab only (sessionStorage), and sent as a bearer token.
"use strict";

const REFRESH_MS = 1000;

function token() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("daybook-token", fragment.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("daybook-token");
}

function text(node, field, value) {
  const el = node.querySelector(`[data-field="${field}"]`);
  if (el.textContent !== String(value)) el.textContent = value;
}

function money(list) {
  return (list || []).map((m) => `${m.amount} ${m.currency}`).join(", ") || "0";
}

const KIND = (k) => (k || "LINE_KIND_UNSPECIFIED").replace("LINE_KIND_", "").toLowerCase().replace(/_/g, " ");

function position(t) {
  const s = t.statement || {};
  if (t.plan === "starter") {
    const over = Number(s.overage_interactions || 0);
    return `${s.dars || 0} of ${s.included || 0} included` + (over ? `, ${over} over (${money(s.overage)})` : "");
  }
  if (t.plan === "commitment") {
    return `${s.drawn_committed || "0"} of ${s.committed_credits || "0"} committed drawn` +
      (Number(s.drawn_top_ups || 0) ? `, ${s.drawn_top_ups} of top-ups` : "") +
      (Number(s.overage_credits || 0) ? `, ${s.overage_credits} over (${money(s.overage)})` : "");
  }
  return "no plan";
}

function rows(tbody, items, cells) {
  tbody.replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    for (const value of cells(item)) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    return tr;
  }));
}

function items(list, values) {
  const shown = values.length ? values : ["none"];
  list.replaceChildren(...shown.map((v) => Object.assign(document.createElement("li"), { textContent: v })));
}

function chart(figure, days) {
  const NS = "http://www.w3.org/2000/svg";
  const width = 900, height = 180, pad = 24;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const most = Math.max(1, ...days.map((d) => d.interactions));
  const mostCredits = Math.max(1e-9, ...days.map((d) => Number(d.credits)));
  const step = (width - pad) / days.length;
  const points = [];
  days.forEach((d, i) => {
    const h = ((height - 2 * pad) * d.interactions) / most;
    const rect = document.createElementNS(NS, "rect");
    rect.setAttribute("x", pad + i * step + 1);
    rect.setAttribute("y", height - pad - h);
    rect.setAttribute("width", Math.max(1, step - 2));
    rect.setAttribute("height", h);
    rect.dataset.date = d.date;
    rect.dataset.interactions = d.interactions;
    rect.dataset.credits = d.credits;
    const title = document.createElementNS(NS, "title");
    title.textContent = `${d.date}: ${d.interactions} interactions, ${d.credits} credits`;
    rect.append(title);
    svg.append(rect);
    points.push(`${pad + i * step + step / 2},${height - pad - ((height - 2 * pad) * Number(d.credits)) / mostCredits}`);
  });
  const line = document.createElementNS(NS, "polyline");
  line.setAttribute("points", points.join(" "));
  svg.append(line);
  for (const [x, anchor, d] of [[pad, "start", days[0]], [width, "end", days[days.length - 1]]]) {
    if (!d) continue;
    const label = document.createElementNS(NS, "text");
    label.setAttribute("x", x);
    label.setAttribute("y", height - 6);
    label.setAttribute("text-anchor", anchor);
    label.textContent = d.date;
    svg.append(label);
  }
  figure.querySelector("svg")?.remove();
  figure.append(svg);
}

function render(data) {
  const main = document.getElementById("tenants");
  const template = document.getElementById("tenant");
  const seen = new Set();
  for (const t of data.tenants) {
    seen.add(t.tenant_id);
    let node = main.querySelector(`section[data-tenant="${CSS.escape(t.tenant_id)}"]`);
    if (!node) {
      node = template.content.firstElementChild.cloneNode(true);
      node.dataset.tenant = t.tenant_id;
      main.append(node);
    }
    text(node, "tenant_id", t.tenant_id);
    if (t.error) {
      text(node, "period", "unavailable: " + t.error);
      continue;
    }
    const u = t.usage;
    for (const field of ["period", "from", "to", "plan"]) text(node, field, t[field]);
    text(node, "interactions", u.interactions || 0);
    text(node, "credits", u.credits || "0");
    text(node, "pass_through", money(u.pass_through));
    text(node, "position", position(t));
    rows(node.querySelector(".meters tbody"), u.meters || [], (m) => [
      m.meter_id, (m.preset || "").replace("METER_", "").toLowerCase(), m.interactions || 0, m.units || 0, m.credits,
    ]);
    rows(node.querySelector(".kinds tbody"), u.credits_by_kind || [], (k) => [
      KIND(k.kind), k.applies_to ? KIND(k.applies_to) : "", k.credits,
    ]);
    const alerts = (t.statement && t.statement.alerts) || [];
    items(node.querySelector(".alerts ul"), alerts.map((a) =>
      `${a.threshold} of ${a.base} reached at ${a.usage} (event ${a.event_id})`));
    chart(node.querySelector(".chart"), t.days);
  }
  for (const node of main.querySelectorAll("section[data-tenant]")) {
    if (!seen.has(node.dataset.tenant)) node.remove();
  }
  const status = document.getElementById("status");
  status.textContent = `${data.tenants.length} tenant(s), as of ${data.generated_at}`;
  status.className = "";
  document.body.dataset.generatedAt = data.generated_at;
}

async function refresh() {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  try {
    const response = await fetch("/usage/data", { headers, cache: "no-store" });
    if (response.status === 401) {
      const body = await response.json();
      document.getElementById("login").hidden = false;
      document.getElementById("login-error").textContent = t ? body.error : "";
      document.getElementById("status").textContent = "a token with read scope is needed";
      return;
    }
    document.getElementById("login").hidden = true;
    render(await response.json());
  } catch (e) {
    const status = document.getElementById("status");
    status.textContent = `not refreshed: ${e}`;
    status.className = "stale";
  }
}

document.getElementById("login").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("daybook-token", document.getElementById("token").value.trim());
  refresh();
});

refresh();
setInterval(refresh, REFRESH_MS);
