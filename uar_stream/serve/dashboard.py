"""The dashboard page (``GET /``): one self-contained HTML file, no external assets.

A card per camera (the live MJPEG view with the overlay, state, fps, latency, route counts,
per-track route timelines), a live event feed (SSE), a form to add a camera and a button to
remove one. The token, when the server has one, is read from the page's own URL
(``/?token=...``), never written into the page.
"""

DASHBOARD_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>uar-stream</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:0;background:#111;color:#ddd}
header{padding:8px 16px;background:#1b1b1b;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
h1{font-size:18px;margin:0} #batch{color:#9a9}
main{display:flex;gap:12px;padding:12px}
#cams{flex:3;display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:12px}
.cam{background:#1b1b1b;border-radius:6px;padding:8px}
.cam img{width:100%;height:270px;object-fit:contain;background:#000;border-radius:4px}
.cam .head{display:flex;justify-content:space-between;align-items:center;margin-bottom:6px}
.state{padding:1px 6px;border-radius:3px;background:#333}
.state.running{background:#264d26}.state.reconnecting{background:#6b4f00}.state.failed{background:#6b1a1a}
.routes span{margin-right:10px}.c{color:#4c4}.a{color:#fb0}.o{color:#e55}
.tl{margin-top:6px}.tlrow{display:flex;align-items:center;gap:6px;margin:2px 0;font-size:11px}
.tlbar{flex:1;height:8px;display:flex;background:#222}.seg{height:100%}
.confident{background:#3c3}.ambiguous{background:#fa0}.out_of_distribution{background:#d33}
aside{flex:1;min-width:280px;background:#1b1b1b;border-radius:6px;padding:8px;max-height:88vh;overflow:auto}
#feed{list-style:none;padding:0;margin:0;font:12px ui-monospace,monospace}
#feed li{border-bottom:1px solid #2a2a2a;padding:2px 0;word-break:break-all}
button{background:#333;color:#ddd;border:1px solid #555;border-radius:3px;cursor:pointer}
input{background:#222;color:#ddd;border:1px solid #555;border-radius:3px;padding:2px 4px}
#msg{color:#e88}
</style></head><body>
<header><h1>uar-stream</h1><span id="batch"></span>
<form id="add">add camera <input name="id" placeholder="id" size="8">
<input name="source" placeholder="rtsp://... or file" size="34"> <button>add</button></form>
<span id="msg"></span></header>
<main><section id="cams"></section>
<aside><b>events</b><ul id="feed"></ul></aside></main>
<script>
const token = new URLSearchParams(location.search).get("token");
const q = token ? "?token=" + encodeURIComponent(token) : "";
const hdr = token ? {"Authorization": "Bearer " + token} : {};
const cards = {};
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; }
function card(s) {
  const c = el("div", "cam"); c.id = "cam-" + s.id; c.dataset.camera = s.id;
  const head = el("div", "head"); const name = el("b", "", s.id);
  const st = el("span", "state"); const del = el("button", "del", "remove");
  del.onclick = async () => { await fetch("/api/streams/" + encodeURIComponent(s.id), {method: "DELETE", headers: hdr}); refresh(); };
  head.append(name, st, del);
  const img = el("img", "live"); img.alt = s.id;
  img.src = "/api/streams/" + encodeURIComponent(s.id) + "/mjpeg" + q;
  const meta = el("div", "meta"); const routes = el("div", "routes"); const tl = el("div", "tl");
  const src = el("div", "src"); src.style.color = "#888"; src.style.fontSize = "11px";
  c.append(head, img, src, meta, routes, tl);
  document.getElementById("cams").append(c);
  return {c, st, meta, routes, tl, src};
}
function update(k, s) {
  k.st.textContent = s.state; k.st.className = "state " + s.state; k.src.textContent = s.source;
  k.meta.textContent = `${s.fps.toFixed(1)} fps · latency p50 ${s.latency_ms_p50 ?? "-"} ms, p95 ${s.latency_ms_p95 ?? "-"} ms · dropped ${s.dropped} · frames ${s.frames}` + (s.error ? " · " + s.error : "");
  k.routes.innerHTML = "";
  k.routes.append(el("span", "c", "confident " + s.routes.confident), el("span", "a", "ambiguous " + s.routes.ambiguous),
                  el("span", "o", "rejected " + s.routes.out_of_distribution));
}
function timelines(k, data) {
  k.tl.innerHTML = ""; const now = data.now || 0;
  for (const t of data.tracks.slice(-6)) {
    const row = el("div", "tlrow"); row.append(el("span", "", "#" + t.track_id));
    const bar = el("div", "tlbar"); const end = t.ended ?? now; const t0 = t.segments[0][0];
    const span = Math.max(end - t0, 1e-3);
    t.segments.forEach((sg, i) => { const next = i + 1 < t.segments.length ? t.segments[i + 1][0] : end;
      const d = el("div", "seg " + sg[1]); d.style.width = (100 * Math.max(next - sg[0], 0) / span) + "%";
      d.title = sg[1] + " from " + sg[0] + " s"; bar.append(d); });
    row.append(bar, el("span", "", end.toFixed(1) + " s")); k.tl.append(row);
  }
}
async function refresh() {
  let r; try { r = await fetch("/api/streams", {headers: hdr}); } catch (e) { return; }
  if (!r.ok) { document.getElementById("msg").textContent = "HTTP " + r.status; return; }
  const d = await r.json(); const seen = new Set();
  document.getElementById("batch").textContent = `engine: ${d.batch.calls} calls, ${d.batch.fill} faces per call, queue ${d.batch.queue_depth}`;
  for (const s of d.streams) { seen.add(s.id); if (!cards[s.id]) cards[s.id] = card(s); update(cards[s.id], s); }
  for (const id of Object.keys(cards)) if (!seen.has(id)) { cards[id].c.remove(); delete cards[id]; }
  for (const id of seen) fetch("/api/streams/" + encodeURIComponent(id) + "/tracks", {headers: hdr})
    .then(x => x.ok ? x.json() : null).then(t => { if (t && cards[id]) timelines(cards[id], t); });
}
document.getElementById("add").onsubmit = async (ev) => {
  ev.preventDefault(); const f = new FormData(ev.target);
  const r = await fetch("/api/streams", {method: "POST", headers: {...hdr, "Content-Type": "application/json"},
    body: JSON.stringify({id: f.get("id"), source: f.get("source")})});
  document.getElementById("msg").textContent = r.ok ? "" : (await r.json()).error; refresh();
};
const feed = document.getElementById("feed");
const es = new EventSource("/api/events" + q);
es.onmessage = (m) => { const e = JSON.parse(m.data); const li = el("li", "ev " + e.event);
  const what = e.event === "face" ? `${e.route} ${e.label} ${e.confidence}` : e.event === "route_changed" ? `#${e.track_id} ${e.from} -> ${e.to}` : (e.track_id !== undefined ? "#" + e.track_id : "");
  li.textContent = `${new Date(e.time * 1000).toLocaleTimeString()} ${e.camera} ${e.event} ${what}`;
  li.dataset.camera = e.camera; feed.prepend(li); while (feed.children.length > 200) feed.lastChild.remove(); };
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""
