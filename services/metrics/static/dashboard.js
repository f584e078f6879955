// The klantreis dashboard: every figure from the read API (/api/v1), with the filters of the
// form at the top applied to every request. No framework and no build step: plain DOM and SVG.

const TOKEN_KEY = "klantreis.token";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

// --- the token: from a ?token= link once, then only from this tab's storage -----------------

function takeTokenFromAddress() {
  const url = new URL(location.href);
  const token = url.searchParams.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

class Refused extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== null && one !== undefined && one !== "") query.append(name, one);
    }
  }
  const response = await fetch(`/api/v1${path}?${query}`, {
    headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` },
    cache: "no-store",
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Refused(response.status, body);
  return body;
}

// --- formatting: one rule per kind of figure ----------------------------------------------

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1, minimumFractionDigits: 1 });
const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "EUR" });
const FORMATS = {
  count: (v) => integer.format(v),
  rate: (v) => `${decimal.format(100 * v)} %`,
  money: (v) => money.format(v),
  seconds: (v) => `${decimal.format(v)} s`,
  score: (v) => decimal.format(v),
};
function show(value, kind) {
  return value === null || value === undefined ? "–" : FORMATS[kind](value);
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// A figure on the page: its text as formatted, its raw value and name for scripts and tests.
function figure(tag, name, value, kind, extra = {}) {
  return el(tag, { "data-figure": name, "data-value": value === null ? "" : String(value), text: show(value, kind), ...extra });
}

function fillRows(table, rows) {
  const body = table.querySelector("tbody");
  body.replaceChildren(...rows);
}

// --- the controls ---------------------------------------------------------------------------

function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

function controls() {
  return {
    site: $("site").value.trim(),
    date_from: $("date-from").value,
    date_to: $("date-to").value,
    compare: $("compare").checked,
    channel: $("filter-channel").value,
    device: $("filter-device").value,
    campaign: $("filter-campaign").value.trim(),
    segment: $("filter-segment").value.trim(),
  };
}

function filtersOf(c) {
  return { site: c.site, channel: c.channel, device: c.device, campaign: c.campaign, segment: c.segment };
}

function rangeOf(c) {
  return { date_from: c.date_from, date_to: c.date_to };
}

function previousRange(c) {
  const first = new Date(`${c.date_from}T00:00:00Z`);
  const last = new Date(`${c.date_to}T00:00:00Z`);
  const days = Math.round((last - first) / 86400000) + 1;
  const end = new Date(first.getTime() - 86400000);
  const start = new Date(end.getTime() - (days - 1) * 86400000);
  return { date_from: isoDay(start), date_to: isoDay(end) };
}

function remember(c) {
  const url = new URL(location.href);
  for (const [name, value] of Object.entries(c)) {
    if (name === "compare") continue;
    if (value) url.searchParams.set(name, value);
    else url.searchParams.delete(name);
  }
  history.replaceState(null, "", url.pathname + url.search);
}

function restore() {
  const url = new URL(location.href);
  const today = new Date();
  const monthAgo = new Date(today.getTime() - 29 * 86400000);
  $("date-from").value = url.searchParams.get("date_from") || isoDay(monthAgo);
  $("date-to").value = url.searchParams.get("date_to") || isoDay(today);
  for (const name of ["channel", "device", "campaign", "segment"]) {
    const value = url.searchParams.get(name);
    const control = $(`filter-${name}`);
    if (!value) continue;
    if (control.tagName === "SELECT") ensureOption(control, value).selected = true;
    else control.value = value;
  }
  return url.searchParams.get("site");
}

function ensureOption(select, value, label = value) {
  for (const option of select.options) if (option.value === value) return option;
  const option = el("option", { value, text: label });
  select.append(option);
  return option;
}

// --- shop metrics ---------------------------------------------------------------------------

const METRICS = [
  ["sessions", "Sessions", "count"],
  ["conversion_rate", "Conversion rate", "rate"],
  ["bounce_rate", "Bounce rate", "rate"],
  ["average_seconds_on_page", "Time on page", "seconds"],
  ["cart_abandonment_rate", "Cart abandonment", "rate"],
  ["orders", "Orders", "count"],
  ["revenue", "Revenue", "money"],
  ["average_order_value", "Average order value", "money"],
  ["customer_lifetime_value", "Customer lifetime value", "money"],
  ["repeat_purchase_rate", "Repeat purchase rate", "rate"],
  ["net_promoter_score", "NPS", "score"],
  ["customer_satisfaction", "CSAT", "rate"],
  ["email_open_rate", "E-mail open rate", "rate"],
];

function renderMetrics(now, before) {
  const cards = METRICS.map(([name, label, kind]) => {
    const card = el("div", { class: "card" }, el("dt", { text: label }), el("dd", {}, figure("span", name, now[name], kind)));
    if (before && now[name] !== null && before[name] !== null && before[name] !== undefined) {
      const change = now[name] - before[name];
      const text = kind === "rate" ? `${change >= 0 ? "+" : ""}${decimal.format(100 * change)} pt`
        : (before[name] ? `${change >= 0 ? "+" : ""}${decimal.format((100 * change) / Math.abs(before[name]))} %` : "");
      card.append(el("dd", { class: `change ${change >= 0 ? "up" : "down"}`, "data-compare": name,
        text: text ? `${text} vs ${show(before[name], kind)}` : `vs ${show(before[name], kind)}` }));
    }
    return card;
  });
  $("metrics").replaceChildren(...cards);
  fillRows($("exit-pages"), now.exit_pages.map((page) => el("tr", {},
    el("th", { scope: "row", text: page.path }),
    figure("td", "exit_page_exits", page.exits, "count"),
    figure("td", "exit_page_views", page.page_views, "count"),
    figure("td", "exit_page_rate", page.exit_rate, "rate"))));
}

// --- two segments side by side ---------------------------------------------------------

const COMPARED = [
  ["sessions", "Sessions", "count"],
  ["conversion_rate", "Conversion rate", "rate"],
  ["orders", "Orders", "count"],
  ["revenue", "Revenue", "money"],
  ["average_order_value", "Average order value", "money"],
  ["cart_abandonment_rate", "Cart abandonment", "rate"],
  ["customer_lifetime_value", "Customer lifetime value", "money"],
];

async function compareSegments(c = controls()) {
  const a = $("compare-a").value.trim(), b = $("compare-b").value.trim();
  $("compare-error").textContent = "";
  if (!a || !b) return;
  try {
    const [first, second] = await Promise.all([a, b].map((segment) =>
      api("/metrics", { ...filtersOf(c), ...rangeOf(c), segment })));
    $("compare-head-a").textContent = a;
    $("compare-head-b").textContent = b;
    fillRows($("compare-table"), COMPARED.map(([name, label, kind]) => {
      const x = first[name], y = second[name];
      let difference = "–";
      if (x !== null && y !== null) {
        difference = kind === "rate" ? `${y - x >= 0 ? "+" : ""}${decimal.format(100 * (y - x))} pt`
          : `${y - x >= 0 ? "+" : ""}${show(y - x, kind)}${x ? ` (${y - x >= 0 ? "+" : ""}${decimal.format((100 * (y - x)) / Math.abs(x))} %)` : ""}`;
      }
      return el("tr", { "data-compared": name }, el("th", { scope: "row", text: label }),
        figure("td", `compare_a:${name}`, x, kind), figure("td", `compare_b:${name}`, y, kind),
        el("td", { "data-difference": name, text: difference }));
    }));
  } catch (error) {
    if (error.status !== 422) throw error;
    $("compare-error").textContent = error.message;
  }
}

// --- phase funnel and drop-off -----------------------------------------------------------

function renderFunnel(funnel, dropoff) {
  const dropped = Object.fromEntries(dropoff.phases.map((p) => [p.phase, p]));
  const widest = Math.max(1, ...funnel.phases.map((p) => p.journeys));
  fillRows($("funnel"), funnel.phases.map((p) => {
    const d = dropped[p.phase];
    const after = Object.entries(d.after_touchpoints).sort((a, b) => b[1] - a[1]).slice(0, 3)
      .map(([touchpoint, n]) => `${touchpoint} (${integer.format(n)})`).join(", ");
    const bar = el("span", { class: "bar", style: null });
    bar.style.width = `${(100 * p.journeys) / widest}%`;
    return el("tr", { "data-phase": p.phase },
      el("th", { scope: "row", text: p.phase }),
      el("td", {}, bar, figure("span", "phase_journeys", p.journeys, "count")),
      figure("td", "phase_from_previous", p.from_previous, "rate"),
      figure("td", "phase_dropped", d.dropped, "count"),
      figure("td", "phase_dropoff_rate", d.rate, "rate"),
      el("td", { text: after || "–" }));
  }));
}

// --- charts -------------------------------------------------------------------------------

const COLORS = ["#2458a6", "#c2410c", "#15803d", "#7c3aed", "#be123c", "#0e7490", "#a16207"];

// A line chart of shares (0..1) over periods, with the same numbers as a table for screen
// readers and for reading off exact values.
function lineChart(target, title, periods, series) {
  const width = 760, height = 220, left = 44, right = 12, top = 12, bottom = 28;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${title}: the table below holds the same numbers`);
  const x = (i) => left + (periods.length < 2 ? 0 : (i * (width - left - right)) / (periods.length - 1));
  const y = (v) => top + (1 - v) * (height - top - bottom);
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    const line = document.createElementNS(SVG, "line");
    Object.entries({ x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: "grid" }).forEach(([k, v]) => line.setAttribute(k, v));
    const label = document.createElementNS(SVG, "text");
    Object.entries({ x: left - 6, y: y(tick) + 4, class: "tick", "text-anchor": "end" }).forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = `${tick * 100}%`;
    svg.append(line, label);
  }
  periods.forEach((period, i) => {
    if (periods.length > 16 && i % Math.ceil(periods.length / 8)) return;
    const label = document.createElementNS(SVG, "text");
    Object.entries({ x: x(i), y: height - 8, class: "tick", "text-anchor": "middle" }).forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = period.slice(5);
    svg.append(label);
  });
  series.forEach((s, n) => {
    let d = "";
    s.values.forEach((v, i) => {
      if (v === null) return;
      d += `${d && s.values[i - 1] !== null ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    });
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    path.setAttribute("class", "series");
    path.setAttribute("stroke", COLORS[n % COLORS.length]);
    path.setAttribute("data-series", s.name);
    svg.append(path);
  });
  const legend = el("ul", { class: "legend" }, ...series.map((s, n) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = COLORS[n % COLORS.length];
    return el("li", {}, swatch, s.name);
  }));
  const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Period" }),
    ...series.map((s) => el("th", { scope: "col", text: s.name })))),
    el("tbody", {}, ...periods.map((period, i) => el("tr", { "data-period": period },
      el("th", { scope: "row", text: period }),
      ...series.map((s) => figure("td", `${target.id}:${s.name}`, s.values[i], "rate"))))));
  target.replaceChildren(svg, legend, el("details", {}, el("summary", { text: "The numbers" }), el("div", { class: "scroll" }, table)));
}

function renderTrend(trends) {
  const phases = Object.keys(trends.days.length ? trends.days[0].journeys_by_phase : {});
  const periods = trends.days.map((d) => d.day);
  const series = [{ name: "session conversion", values: trends.days.map((d) => d.conversion_rate) }]
    .concat(phases.slice(1).map((phase) => ({
      name: `→ ${phase}`, values: trends.days.map((d) => d.from_previous_phase[phase]),
    })));
  lineChart($("trend-chart"), `Conversion between phases per ${trends.grain}`, periods, series);
}

// --- step funnel ----------------------------------------------------------------------------

function stepParams() {
  return {
    step: $("steps").value.split(",").map((s) => s.trim()).filter(Boolean),
    order: $("steps-order").value,
    window: $("steps-window").value.trim(),
  };
}

function renderSteps(funnel, trend) {
  fillRows($("step-funnel"), funnel.steps.map((s) => el("tr", {},
    el("th", { scope: "row", text: s.step }),
    figure("td", "step_people", s.people, "count"),
    figure("td", "step_from_previous", s.conversion_from_previous, "rate"),
    figure("td", "step_from_first", s.conversion_from_first, "rate"))));
  const stopped = funnel.stopped_then;
  $("stopped-then").replaceChildren(...(stopped.length ? [el("h3", { text: "What those who stopped did next" }),
    el("ul", { class: "stopped" }, ...stopped.map((s) => el("li", { "data-stopped-after": s.after_step },
      `after ${s.after_step}: `, el("strong", { text: s.event }), " ",
      figure("span", "stopped_people", s.people, "count"), " people")))] : []));
  const periods = trend.periods.map((p) => p.first);
  const series = trend.periods.length ? trend.periods[0].steps.slice(1).map((s, i) => ({
    name: `→ ${s.step}`,
    values: trend.periods.map((p) => (p.steps[0].people ? p.steps[i + 1].conversion_from_previous : null)),
  })) : [];
  lineChart($("steps-chart"), "Conversion of each step over time", periods, series);
}

// --- journey map (a Sankey of cells) ----------------------------------------------------

function renderMap(answer, c) {
  const { phases, map } = answer;
  const target = $("journey-map");
  if (!map.nodes.length) {
    target.replaceChildren(el("p", { class: "muted", text: "No journeys in this range." }));
    return;
  }
  const columnWidth = 180, nodeWidth = 14, gap = 10, height = 420, top = 28;
  const width = phases.length * columnWidth + 40;
  const byPhase = Object.fromEntries(phases.map((p) => [p, map.nodes.filter((n) => n.phase === p)]));
  const tallest = Math.max(...phases.map((p) => byPhase[p].reduce((sum, n) => sum + n.journeys, 0)));
  const most = Math.max(...phases.map((p) => byPhase[p].length));
  const scale = (height - top - gap * most) / Math.max(1, tallest);
  const place = {};
  phases.forEach((phase, column) => {
    let y = top;
    for (const node of byPhase[phase]) {
      const h = Math.max(2, node.journeys * scale);
      place[`${node.phase}|${node.touchpoint}`] = { x: 20 + column * columnWidth, y, h, node, outY: y, inY: y };
      y += h + gap;
    }
  });
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 20}`);
  svg.setAttribute("role", "group");
  svg.setAttribute("aria-label", "Journey map: the table below lists every cell, flow and exit");
  phases.forEach((phase, column) => {
    const label = document.createElementNS(SVG, "text");
    Object.entries({ x: 20 + column * columnWidth, y: 16, class: "phase", "data-phase-column": phase }).forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = phase;
    svg.append(label);
  });
  // A journey that arrived in a cell twice can leave it twice: a cell's flows may add up to more
  // than its journeys, so each end is narrowed to fit the cell it meets.
  const outOf = {}, into = {};
  for (const flow of map.flows) {
    const from = `${flow.from_phase}|${flow.from_touchpoint}`, to = `${flow.to_phase}|${flow.to_touchpoint}`;
    outOf[from] = (outOf[from] || 0) + flow.journeys;
    into[to] = (into[to] || 0) + flow.journeys;
  }
  const fit = (spot, total) => Math.min(1, spot.h / Math.max(1, total * scale));
  for (const flow of map.flows) {
    const from = place[`${flow.from_phase}|${flow.from_touchpoint}`];
    const to = place[`${flow.to_phase}|${flow.to_touchpoint}`];
    if (!from || !to) continue;
    const narrowed = Math.min(fit(from, outOf[`${flow.from_phase}|${flow.from_touchpoint}`]),
      fit(to, into[`${flow.to_phase}|${flow.to_touchpoint}`]));
    const w = Math.max(1, flow.journeys * scale * narrowed);
    const x0 = from.x + nodeWidth, x1 = to.x;
    const y0 = from.outY + w / 2, y1 = to.inY + w / 2;
    from.outY += w; to.inY += w;
    const bend = Math.max(40, Math.abs(x1 - x0) / 2);
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", `M${x0},${y0} C${x0 + bend},${y0} ${x1 - bend},${y1} ${x1},${y1}`);
    path.setAttribute("class", x1 > x0 ? "flow" : "flow back");
    path.setAttribute("stroke-width", w.toFixed(1));
    path.setAttribute("data-flow", `${flow.from_phase}|${flow.from_touchpoint}→${flow.to_phase}|${flow.to_touchpoint}`);
    const tip = document.createElementNS(SVG, "title");
    tip.textContent = `${flow.from_touchpoint} (${flow.from_phase}) → ${flow.to_touchpoint} (${flow.to_phase}): ${integer.format(flow.journeys)} journeys`;
    path.append(tip);
    svg.append(path);
  }
  for (const spot of Object.values(place)) {
    const { node } = spot;
    const cell = document.createElementNS(SVG, "g");
    cell.setAttribute("class", "cell");
    cell.setAttribute("tabindex", "0");
    cell.setAttribute("role", "button");
    cell.setAttribute("data-cell", `${node.phase}|${node.touchpoint}`);
    cell.setAttribute("aria-label", `${node.touchpoint} in ${node.phase}: ${integer.format(node.journeys)} journeys, ${integer.format(node.exits)} exits. Show the journeys`);
    const rect = document.createElementNS(SVG, "rect");
    Object.entries({ x: spot.x, y: spot.y, width: nodeWidth, height: spot.h }).forEach(([k, v]) => rect.setAttribute(k, v));
    const exit = document.createElementNS(SVG, "rect");
    Object.entries({ x: spot.x + nodeWidth, y: spot.y, width: 4, height: Math.max(0, (node.exits / Math.max(1, node.journeys)) * spot.h), class: "exit" }).forEach(([k, v]) => exit.setAttribute(k, v));
    const label = document.createElementNS(SVG, "text");
    Object.entries({ x: spot.x + nodeWidth + 6, y: spot.y + Math.min(spot.h, 24) / 2 + 4, class: "label" }).forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = `${node.touchpoint} ${integer.format(node.journeys)}`;
    cell.append(rect, exit, label);
    const open = () => showCell(node, c);
    cell.addEventListener("click", open);
    cell.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); } });
    svg.append(cell);
  }
  const table = el("table", {}, el("thead", {}, el("tr", {}, ...["Phase", "Touchpoint", "Journeys", "Exits", "Still there"].map((t) => el("th", { scope: "col", text: t })))),
    el("tbody", {}, ...map.nodes.map((n) => el("tr", {}, el("th", { scope: "row", text: n.phase }), el("td", { text: n.touchpoint }),
      figure("td", "cell_journeys", n.journeys, "count"), figure("td", "cell_exits", n.exits, "count"), figure("td", "cell_stayed", n.stayed, "count")))));
  target.replaceChildren(el("div", { class: "scroll" }, svg), el("details", {}, el("summary", { text: "Cells as a table" }), el("div", { class: "scroll" }, table)));
}

async function showCell(node, c) {
  const target = $("cell-journeys");
  const answer = await api("/journey-map/journeys", { ...filtersOf(c), ...rangeOf(c), phase: node.phase, touchpoint: node.touchpoint });
  target.replaceChildren(el("h3", { text: `Journeys into ${node.phase} through ${node.touchpoint}` }),
    el("ul", { class: "journeys" }, ...answer.journeys.map((id) => {
      const button = el("button", { type: "button", class: "link", "data-journey": id, text: id });
      button.addEventListener("click", () => { $("customer").value = id; showCustomer(c.site, id); });
      return el("li", {}, button);
    })));
}

// --- breakdowns and touchpoints ---------------------------------------------------------------

function renderBreakdown(answer) {
  const withSessions = answer.rows.some((r) => r.sessions !== null);
  const phases = Object.keys(answer.rows.length ? answer.rows[0].journeys_by_phase : {});
  const head = el("tr", {}, el("th", { scope: "col", text: answer.by }),
    ...(withSessions ? [el("th", { scope: "col", text: "Sessions" }), el("th", { scope: "col", text: "Conversion" })] : []),
    ...(answer.by === "device" ? [el("th", { scope: "col", text: "People" }), el("th", { scope: "col", text: "Page views" })] : []),
    ...phases.map((p) => el("th", { scope: "col", text: p })));
  $("breakdown").querySelector("thead").replaceChildren(head);
  fillRows($("breakdown"), answer.rows.map((r) => el("tr", { "data-value-of": r.value },
    el("th", { scope: "row", text: r.value }),
    ...(withSessions ? [figure("td", "breakdown_sessions", r.sessions, "count"), figure("td", "breakdown_conversion", r.conversion_rate, "rate")] : []),
    ...(answer.by === "device" ? [figure("td", "breakdown_people", r.people, "count"), figure("td", "breakdown_page_views", r.page_views, "count")] : []),
    ...phases.map((p) => {
      const cell = figure("td", "breakdown_journeys", r.journeys_by_phase[p], "count");
      const share = r.from_previous_phase[p];
      if (share !== null) cell.append(el("small", { text: ` (${show(share, "rate")})` }));
      return cell;
    }))));
}

function renderTouchpoints(answer) {
  fillRows($("touchpoints"), answer.touchpoints.slice(0, 25).map((t) => el("tr", {},
    el("th", { scope: "row", text: t.phase }), el("td", { text: t.touchpoint }), el("td", { text: t.channel }),
    figure("td", "touch_last", t.last_touch, "count"), figure("td", "touch_first", t.first_touch, "count"))));
}

// --- customer timeline ------------------------------------------------------------------

async function showCustomer(site, id) {
  $("customer-error").textContent = "";
  const target = $("customer-journey");
  try {
    const journey = await api(`/customers/${encodeURIComponent(id)}/journey`, { site });
    target.replaceChildren(
      el("p", { text: `Furthest phase: ${journey.furthest_phase || "–"}; now in ${journey.current_phase || "–"}; ids: ${journey.identities.join(", ")}` }),
      el("ol", { class: "timeline", "data-customer": journey.customer_id }, ...journey.steps.map((s) => el("li", { "data-kind": s.kind },
        el("time", { datetime: s.at, text: s.at.replace("T", " ").slice(0, 19) }),
        el("span", { class: `kind ${s.kind}`, text: s.kind.replace("_", " ") }),
        el("span", { text: ` ${s.from_phase ? `${s.from_phase} → ` : ""}${s.to_phase}` }),
        el("span", { class: "muted", text: [s.event_name, s.touchpoint, s.channel].filter(Boolean).join(" · ") ? ` (${[s.event_name, s.touchpoint, s.channel].filter(Boolean).join(" · ")})` : "" })))));
    target.scrollIntoView({ block: "nearest" });
  } catch (error) {
    target.replaceChildren();
    $("customer-error").textContent = error.message;
  }
}

// --- live signals ------------------------------------------------------------------------

let newestSignal = null;
let signalTimer = null;

async function pollSignals(c) {
  try {
    const answer = await api("/signals", { ...filtersOf(c), after: newestSignal, limit: 20 });
    const list = $("signals");
    for (const s of answer.signals.slice().reverse()) {
      list.prepend(el("li", { "data-signal": s.kind },
        el("time", { datetime: s.at, text: s.at.replace("T", " ").slice(0, 19) }),
        el("span", { class: `kind ${s.kind}`, text: s.kind.replaceAll("_", " ") }),
        el("span", { text: ` in ${s.phase}: ${s.journey_id}` })));
    }
    while (list.children.length > 30) list.lastChild.remove();
    if (answer.signals.length) newestSignal = answer.signals[0].at;
  } catch (error) {
    $("status").textContent = `Signals: ${error.message}`;
  }
}

function watchSignals(c) {
  clearInterval(signalTimer);
  newestSignal = null;
  $("signals").replaceChildren();
  pollSignals(c);
  signalTimer = setInterval(() => pollSignals(c), 5000);
}

// --- loading everything ------------------------------------------------------------------

let loading = 0;

// A segment of the shop's own in use (`key:value`) can also split the breakdown by its key.
function offerOwnSegments() {
  for (const text of [$("filter-segment").value, $("compare-a").value, $("compare-b").value]) {
    const key = text.includes(":") ? text.split(":")[0].trim() : "";
    if (key) ensureOption($("breakdown-by"), `segment:${key}`, `${key} (your segment)`);
  }
}

async function refresh() {
  const c = controls();
  if (!c.site) return;
  offerOwnSegments();
  remember(c);
  const turn = ++loading;
  document.body.dataset.loading = "true";
  $("status").textContent = "Loading…";
  const filters = filtersOf(c), range = rangeOf(c);
  // Each figure is drawn as soon as its answer arrives: a slow one holds up no other.
  const current = (draw) => (...answers) => { if (turn === loading) draw(...answers); };
  const both = (...calls) => Promise.all(calls);
  try {
    await Promise.all([
      both(api("/metrics", { ...filters, ...range }),
        c.compare ? api("/metrics", { ...filters, ...previousRange(c) }) : null)
        .then(current(([metrics, before]) => renderMetrics(metrics, before))),
      both(api("/funnel", { ...filters, ...range }), api("/dropoff", { ...filters, ...range }))
        .then(current(([funnel, dropoff]) => renderFunnel(funnel, dropoff))),
      api("/trends", { ...filters, ...range, grain: $("trend-grain").value })
        .then(current((trends) => renderTrend(trends))),
      api("/journey-map", { ...filters, ...range }).then(current((map) => renderMap(map, c))),
      api("/breakdown", { ...filters, ...range, by: $("breakdown-by").value })
        .then(current((breakdown) => renderBreakdown(breakdown))),
      api("/touchpoints", { ...filters, ...range }).then(current((t) => renderTouchpoints(t))),
      api("/breakdown", { site: c.site, ...range, by: "channel" }).then(current((channels) => {
        for (const row of channels.rows) ensureOption($("filter-channel"), row.value);
      })),
      refreshSteps(c),
      compareSegments(c),
    ]);
    if (turn !== loading) return;
    watchSignals(c);
    const shown = Object.entries(filters).filter(([k, v]) => k !== "site" && v).map(([k, v]) => `${k} ${v}`);
    $("status").textContent = `${c.date_from} to ${c.date_to}${shown.length ? `, only ${shown.join(", ")}` : ""}.`;
    document.body.dataset.loading = "false";
  } catch (error) {
    if (error.status === 401) return signOut("The token is not valid any more: sign in again.");
    if (turn !== loading) return;
    $("status").textContent = error.message;
    document.body.dataset.loading = "error";
  }
}

async function refreshSteps(c = controls()) {
  $("steps-error").textContent = "";
  const params = { ...filtersOf(c), ...rangeOf(c), ...stepParams() };
  try {
    const [funnel, trend] = await Promise.all([
      api("/funnels/steps", params),
      api("/funnels/steps/trend", { ...params, grain: $("steps-grain").value }),
    ]);
    renderSteps(funnel, trend);
  } catch (error) {
    if (error.status !== 422) throw error;
    $("steps-error").textContent = error.message;
  }
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(signalTimer);
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

async function start() {
  const token = takeTokenFromAddress();
  const site = restore();
  if (!token) return signOut();
  try {
    const me = await api("/whoami");
    $("site").value = site || me.site || "";
    if (me.site) $("site").readOnly = true;
  } catch (error) {
    return signOut(error.status === 401 ? "That token is not valid." : error.message);
  }
  $("login").hidden = true;
  $("main").hidden = false;
  $("site-name").textContent = $("site").value;
  await refresh();
}

$("controls").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
$("compare-form").addEventListener("submit", (e) => { e.preventDefault(); offerOwnSegments(); compareSegments(); });
for (const id of ["filter-channel", "filter-device", "filter-campaign", "filter-segment", "compare", "date-from", "date-to", "breakdown-by", "trend-grain"]) {
  $(id).addEventListener("change", () => refresh());
}
$("steps-form").addEventListener("submit", (e) => { e.preventDefault(); refreshSteps(); });
$("steps-grain").addEventListener("change", () => refreshSteps());
$("customer-form").addEventListener("submit", (e) => { e.preventDefault(); showCustomer(controls().site, $("customer").value.trim()); });
$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  start();
});
start();
