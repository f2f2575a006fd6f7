/**
 * `GET /dashboard` on the API port: the server's figures live, from `GET /api/stats/stream` (the
 * stats snapshot as Server-Sent Events, once a second). Same key rules as the API; a browser
 * cannot set a header on a page load, so these two routes also take the key as `?key=`.
 */

/** The page. It reads the stream at its own origin, passing on its `?key=`. */
export function dashboardPage(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Switchboard dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.3rem; margin: 0 0 .2rem; } #state { color: #666; margin-bottom: 1rem; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: .6rem; }
.tile { border: 1px solid #ddd; border-radius: 6px; padding: .5rem .7rem; }
.tile .v { font-size: 1.5rem; font-weight: 600; } .tile .k { color: #666; font-size: 12px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(22rem, 1fr)); gap: .8rem; margin-top: 1rem; }
.chart { border: 1px solid #ddd; border-radius: 6px; padding: .5rem; } .chart h2 { font-size: 13px; margin: 0 0 .3rem; }
svg { width: 100%; height: 120px; } svg text { font-size: 10px; fill: #666; }
#gateways td { padding: .1rem .8rem .1rem 0; }
</style></head><body>
<h1>Switchboard</h1>
<div id="state">connecting…</div>
<div class="tiles" id="tiles"></div>
<div class="charts" id="charts"></div>
<h2 style="font-size:14px;margin-top:1rem">Gateways</h2>
<table id="gateways"><tr><td>this process only</td></tr></table>
<script>
const WINDOW = 120; // seconds of history in the charts
const key = new URLSearchParams(location.search).get('key');
const tiles = [
  ['connections', 'open connections', (s) => s.connections],
  ['byTransport', 'by transport', (s) => Object.entries(s.streams).filter(([, n]) => n > 0).map(([t, n]) => t + ' ' + n).join(', ') || 'none'],
  ['deliveries', 'deliveries / s', (s, r) => r.deliveries.toFixed(0)],
  ['messagesIn', 'messages in / s', (s, r) => r.messagesIn.toFixed(0)],
  ['slow', 'slow consumers cut (total)', (s) => s.slowConsumers],
  ['lag', 'event-loop delay p99 (ms)', (s) => s.api.eventLoopDelayP99Ms],
  ['rss', 'memory, RSS (MB)', (s) => (s.memory.rss / 1048576).toFixed(1)],
  ['cluster', 'cluster: gateways / connections', (s) => s.cluster.gateways + ' / ' + s.cluster.connections],
];
const charts = [
  ['connections', 'Open connections', '', (s) => s.connections],
  ['deliveries', 'Deliveries per second', '/s', (s, r) => r.deliveries],
  ['rss', 'Memory (RSS)', ' MB', (s) => s.memory.rss / 1048576],
  ['lag', 'Event-loop lag, worst of the last second', ' ms', (s) => s.api.eventLoopLagMs],
];
const series = Object.fromEntries(charts.map(([id]) => [id, []]));
document.getElementById('tiles').innerHTML = tiles.map(([id, label]) => '<div class="tile"><div class="v" id="t-' + id + '">–</div><div class="k">' + label + '</div></div>').join('');
document.getElementById('charts').innerHTML = charts.map(([id, title]) => '<div class="chart"><h2>' + title + '</h2><svg id="c-' + id + '" viewBox="0 0 300 120" preserveAspectRatio="none"></svg></div>').join('');
function draw(id, unit) {
  const pts = series[id];
  const max = Math.max(1, ...pts.map((p) => p[1]));
  const now = Date.now() / 1000;
  const x = (t) => 30 + ((t - (now - WINDOW)) / WINDOW) * 265;
  const y = (v) => 105 - (v / max) * 95;
  const line = pts.map((p) => x(p[0]).toFixed(1) + ',' + y(p[1]).toFixed(1)).join(' ');
  const fmt = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + unit;
  document.getElementById('c-' + id).innerHTML =
    '<line x1="30" y1="10" x2="30" y2="105" stroke="#bbb"/><line x1="30" y1="105" x2="295" y2="105" stroke="#bbb"/>' +
    '<text x="0" y="14">' + fmt(max) + '</text><text x="0" y="108">0</text>' +
    '<text x="30" y="118">-' + WINDOW + ' s</text><text x="270" y="118">now</text>' +
    '<polyline fill="none" stroke="#2463b4" stroke-width="1.5" points="' + line + '"/>';
}
let prev;
const es = new EventSource('/api/stats/stream' + (key ? '?key=' + encodeURIComponent(key) : ''));
es.onopen = () => { document.getElementById('state').textContent = 'live'; };
es.onerror = () => { document.getElementById('state').textContent = 'reconnecting…'; };
es.onmessage = (e) => {
  const s = JSON.parse(e.data);
  const t = Date.now() / 1000;
  const dt = prev ? Math.max(0.001, t - prev.t) : 1;
  const rate = {
    deliveries: prev ? (s.messagesOut - prev.s.messagesOut) / dt : 0,
    messagesIn: prev ? (s.messagesIn - prev.s.messagesIn) / dt : 0,
  };
  prev = { s, t };
  document.getElementById('state').textContent = 'live: ' + s.role + ', up ' + s.uptimeSeconds + ' s, bus ' + s.bus.kind + (s.bus.connected ? '' : ' (disconnected)');
  for (const [id, , f] of tiles) document.getElementById('t-' + id).textContent = String(f(s, rate));
  const per = s.cluster.perGateway;
  if (per) {
    const rows = Object.entries(per).sort().map(([gw, l]) => '<tr><td>' + gw.replace(/[<&]/g, '') + '</td><td>' + l.connections + ' connections</td><td>' + l.ids + ' ids</td></tr>');
    document.getElementById('gateways').innerHTML = rows.join('') || '<tr><td>no live gateway</td></tr>';
  }
  for (const [id, , unit, f] of charts) {
    series[id].push([t, f(s, rate)]);
    while (series[id].length && series[id][0][0] < t - WINDOW) series[id].shift();
    draw(id, unit);
  }
};
</script>
</body></html>
`;
}
