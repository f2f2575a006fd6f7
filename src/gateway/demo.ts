/**
 * `GET /` on the client port (`--no-demo` turns it off): the article's demo made visible. Pick an
 * id, watch messages arrive through the browser client (`/switchboard.js`), see the transport,
 * resume gaps and disconnect reasons, and copy the `curl` line that publishes to it. `/?id=42`
 * opens it connected as 42; `&token=` passes a client token where tokens are required.
 */
import { escapeHtml } from './transports/test.js';

/**
 * The page. `publishUrl`: the API's `/api/send` (empty when this process has no API: a cluster's
 * gateway, whose routers take publishes); `tokens`: whether ids need a token here.
 */
export function demoPage(publishUrl: string, tokens: boolean): string {
  const publish = publishUrl
    ? `curl -d '{"id":"<span class="id">42</span>","msg":"Hello World"}' ${escapeHtml(publishUrl)}`
    : 'publish through the API of a router of this cluster: POST /api/send {"id","msg"}';
  const tokenNote = tokens
    ? '<p class="note">This server requires a token: open <code>/?id=42&amp;token=…</code> with one from <code>switchboard token 42</code>.</p>'
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Switchboard demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 15px/1.4 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; margin: 0 0 .2rem; } .sub { color: #666; margin: 0 0 1.2rem; }
form { display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; }
input, select, button { font: inherit; padding: .3rem .5rem; }
#status { margin: .8rem 0; font-weight: 600; } #status.open { color: #176b2c; } #status.closed { color: #a01b1b; }
pre { background: #f4f4f4; padding: .6rem; overflow-x: auto; }
ol#log { font-family: ui-monospace, monospace; font-size: 13px; padding-left: 2.2rem; }
#log li.event { color: #8a5a00; } .note { color: #8a5a00; }
</style></head><body>
<h1>Switchboard</h1>
<p class="sub">A comet server after Richard Jones' million-user mochiweb series: this page is a client.</p>
${tokenNote}
<form id="form"><label>id <input id="id" value="42" size="12" required></label>
<label>transport <select id="transport"><option>auto</option><option>ws</option><option>sse</option><option>poll</option></select></label>
<button id="go">connect</button></form>
<div id="status">not connected</div>
<p>Publish to it from a terminal:</p>
<pre id="curl">${publish}</pre>
<ol id="log"></ol>
<script type="module">
import { connect } from '/switchboard.js';
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let sub;
function line(text, cls) {
  const li = document.createElement('li');
  li.textContent = new Date().toLocaleTimeString() + '  ' + text;
  if (cls) li.className = cls;
  $('log').prepend(li);
}
function start(id) {
  sub?.close();
  $('log').textContent = '';
  for (const el of document.querySelectorAll('.id')) el.textContent = id;
  const token = params.get('token') || undefined;
  sub = connect(location.origin, { ids: [id], token, transport: $('transport').value });
  sub.on('status', (s) => {
    $('status').textContent = s.status + (s.transport ? ' over ' + s.transport : '') + ' as ' + id;
    $('status').className = s.status;
  });
  sub.on('message', (m) => line(m.data, 'message'));
  sub.on('gap', (g) => line('gap: messages after ' + g.last + ' may be missing (' + g.reason + ')', 'event'));
  sub.on('disconnect', (d) => line('disconnect ' + d.code + ' ' + d.reason + (d.reconnect ? ', reconnecting' : ', stopped'), 'event'));
  history.replaceState(null, '', '/?id=' + encodeURIComponent(id) + (token ? '&token=' + encodeURIComponent(token) : ''));
}
$('form').addEventListener('submit', (e) => { e.preventDefault(); start($('id').value.trim()); });
if (params.get('id')) { $('id').value = params.get('id'); start(params.get('id')); }
</script>
</body></html>
`;
}
