/* klantreis browser tracker: <script src="https://COLLECTOR/t.js" data-key="WRITE_KEY" async>.
   Options (data-key, host, consent, cookieless, spa, flush) and the API: docs/event-api.md. */
(function (w, d) {
  var s = d.currentScript || {}, o = s.dataset || {}, L = w.localStorage, S = w.sessionStorage;
  var host = o.host || (s.src || "").replace(/\/t\.js.*$/, "");
  var url = host + "/v1/events?key=" + encodeURIComponent(o.key || "");
  var Q = "kr_q", C = "kr_c", U = "kr_u", A = "kr_a", K = "kr_k";
  var asks = o.consent == "required", consented = !asks, held = [], timer = 0, busy = 0;
  var cookieless = o.cookieless == "true", mem = {};
  var every = +o.flush || 2000, lastPath = location.pathname, lastUrl = location.href;

  function id() {
    return w.crypto && crypto.randomUUID ? crypto.randomUUID()
      : "xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx".replace(/x/g, function () { return (Math.random() * 16 | 0).toString(16); });
  }
  // The browser is written to only with consent (when asked for) and never when cookieless;
  // until then values live in memory, for this page only.
  function may() { return consented && !cookieless; }
  function get(k, store) {
    if (!may()) return mem[k] == null ? null : mem[k];
    try { return (store || L).getItem(k); } catch (e) { return null; }
  }
  function put(k, v, store) {
    if (!may()) { if (v == null) delete mem[k]; else mem[k] = v; return; }
    try { v == null ? (store || L).removeItem(k) : (store || L).setItem(k, v); } catch (e) {}
  }
  function cookie(v) {
    if (!may()) return null;
    if (v) d.cookie = A + "=" + v + ";path=/;max-age=31536000;samesite=lax";
    var m = d.cookie.match(new RegExp("(?:^|; )" + A + "=([^;]+)"));
    return m && m[1];
  }
  function anon() {
    if (cookieless) return undefined; // the collector names the visitor
    if (!may()) return get(A) || (put(A, id()), get(A));
    return cookie() || get(A) || (cookie(id()), cookie()) || get(A) || (put(A, id()), get(A));
  }
  function persist() { // consent given: what was kept in memory goes where it belongs
    var m = mem; mem = {};
    if (m[A]) { cookie(m[A]); put(A, m[A]); }
    if (m[C]) put(C, m[C], S);
    if (m[U]) put(U, m[U]);
  }
  function wipe() { // consent refused: nothing of ours stays in the browser
    mem = {}; held = [];
    [[L, A], [L, Q], [L, U], [L, K], [S, A], [S, C]].forEach(function (p) { try { p[0].removeItem(p[1]); } catch (e) {} });
    d.cookie = A + "=;path=/;max-age=0";
  }
  function queue(q) { if (q) put(Q, JSON.stringify(q.slice(-200))); try { return JSON.parse(get(Q)) || []; } catch (e) { return []; } }
  // Ids the collector acknowledged (last 200): never sent again, even by another tab.
  function acked(ids) {
    var a; try { a = JSON.parse(get(K)) || []; } catch (e) { a = []; }
    if (ids) put(K, JSON.stringify(a = a.concat(ids).slice(-200)));
    return a;
  }

  // Campaign of the landing page (UTM and ad click ids), kept for the visit.
  var qs = new URLSearchParams(location.search), camp = {}, n = 0;
  ["source", "medium", "campaign", "term", "content"].forEach(function (k) {
    var v = qs.get("utm_" + k); if (v) { camp[k == "campaign" ? "name" : k] = v; n++; }
  });
  if (n) put(C, JSON.stringify(camp), S);
  try { camp = JSON.parse(get(C, S)) || {}; } catch (e) { camp = {}; }

  function send(type, body, ref, at) {
    emit();
    var e = body || {};
    e.type = type; e.event_id = id(); e.anonymous_id = anon(); e.timestamp = at || new Date().toISOString();
    var u = get(U); if (u) e.user_id = u;
    e.context = {
      page: { url: location.href, path: location.pathname, title: d.title, search: location.search, referrer: ref || d.referrer },
      campaign: camp, user_agent: navigator.userAgent, locale: navigator.language, library: "klantreis.js/1"
    };
    if (!consented) { held.push(e); return; }
    queue(queue().concat([e]));
    if (!timer) timer = setTimeout(flush, every);
  }
  function flush(beacon) {
    emit(); clearTimeout(timer); timer = 0;
    var done = acked(), q = queue().filter(function (e) { return done.indexOf(e.event_id) < 0; });
    if (!q.length || !consented || (busy && !beacon)) return;
    var batch = q.slice(0, 50), now = new Date().toISOString();
    batch.forEach(function (e) { e.sent_at = now; if (asks) e.context.consent = true; });
    var body = JSON.stringify(batch);
    queue(q.slice(batch.length));
    if (beacon === true && navigator.sendBeacon && navigator.sendBeacon(url, new Blob([body], { type: "text/plain" }))) return;
    busy = 1;
    // text/plain keeps the request "simple": no CORS preflight. 5xx and 429 go back in the queue.
    fetch(url, { method: "POST", body: body, keepalive: true, headers: { "Content-Type": "text/plain" } })
      .then(function (r) {
        if (r.status >= 500 || r.status == 429) queue(batch.concat(queue()));
        else acked(batch.map(function (e) { return e.event_id; }));
      })
      .catch(function () { queue(batch.concat(queue())); })
      .then(function () { busy = 0; if (queue().length) timer = setTimeout(flush, every); });
  }
  function page(name, props, ref, at) { send("page", { name: name || d.title || undefined, properties: props || {} }, ref, at); }
  function track(ev, props) { send("track", { event: ev, properties: props || {} }); }
  // SPAs set the title after the URL: the view goes 100 ms later (or before the next event,
  // or on leaving), timed at the change.
  var pend;
  function emit() { var p = pend; if (p) { pend = 0; clearTimeout(p.t); page(null, null, p.r, p.a); } }
  function spa() {
    if (location.pathname == lastPath) return;
    emit(); pend = { r: lastUrl, a: new Date().toISOString(), t: setTimeout(emit, 100) };
    lastPath = location.pathname; lastUrl = location.href;
  }

  var k = w.klantreis = {
    page: page, track: track, flush: flush, anonymousId: anon,
    identify: function (u, traits) { if (u) put(U, String(u)); send("identify", { traits: traits || {} }); },
    reset: function () { flush(true); put(U, null); put(A, null); put(A, null, S); if (may()) d.cookie = A + "=;path=/;max-age=0"; },
    consent: function (yes) {
      consented = !!yes;
      if (!yes) return wipe();
      persist();
      held.forEach(function (e) { queue(queue().concat([e])); }); held = []; flush();
    },
    productViewed: function (p) { track("Product Viewed", p); },
    productAdded: function (p) { track("Product Added", p); },
    checkoutStarted: function (p) { track("Checkout Started", p); },
    orderCompleted: function (p) { track("Order Completed", p); }
  };
  if (o.spa != "false") {
    ["pushState", "replaceState"].forEach(function (m) {
      var f = history[m]; history[m] = function () { var r = f.apply(this, arguments); spa(); return r; };
    });
    w.addEventListener("popstate", spa);
  }
  w.addEventListener("pagehide", function () { flush(true); });
  d.addEventListener("visibilitychange", function () { if (d.visibilityState == "hidden") flush(true); });
  page();
  if (queue().length) flush();
  return k;
})(window, document);
