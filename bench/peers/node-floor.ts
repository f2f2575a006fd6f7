/**
 * The least a Node.js server can do per delivery, for the throughput benchmark: the C
 * reference's protocol (bench/peers/c/server.c) in plain `node:net` with nothing else — no
 * routing beyond an array, no history, no counts but one. `socket.write` of one small chunk per
 * delivery is the floor every Node server pays; comparing Switchboard with it separates what
 * Switchboard adds from what Node costs.
 *
 *   node dist/bench/peers/node-floor.js MAX_ID   (prints "ready CLIENT_PORT PUBLISH_PORT")
 */
import net from 'node:net';

const maxId = Number(process.argv[2] ?? 20_000);
const byId: (net.Socket | undefined)[] = new Array(maxId + 1);
const counts = new Uint32Array(maxId + 1);
const HEAD =
  'HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n';

const clients = net.createServer({ noDelay: true }, (socket) => {
  socket.once('data', (d: Buffer) => {
    const m = /GET \/test\/(\d+)/.exec(d.toString('latin1'));
    const id = m ? Number(m[1]) : -1;
    if (id < 0 || id > maxId) {
      socket.destroy();
      return;
    }
    byId[id] = socket;
    const welcome = `Mochiconntest welcomes you! Your Id: ${id}\n`;
    socket.write(`${HEAD}${welcome.length.toString(16)}\r\n${welcome}\r\n`);
    socket.on('data', () => undefined);
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    for (let i = 0; i <= maxId; i++) if (byId[i] === socket) byId[i] = undefined;
  });
});

const publishers = net.createServer({ noDelay: true }, (socket) => {
  let buf = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => {
    buf += d;
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const m = /content-length:\s*(\d+)/i.exec(buf.slice(0, end));
      const len = m ? Number(m[1]) : 0;
      if (buf.length < end + 4 + len) return;
      const body = buf.slice(end + 4, end + 4 + len);
      buf = buf.slice(end + 4 + len);
      let delivered = 0;
      for (const line of body.split('\n')) {
        const id = Number(line);
        const s = byId[id];
        if (s === undefined) continue;
        const n = ++counts[id]!;
        const text = `Recvd msg #${n}: 'x'<br/>`;
        s.write(`${text.length.toString(16)}\r\n${text}\r\n`);
        delivered++;
      }
      const answer = String(delivered);
      socket.write(
        `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${answer.length}\r\n\r\n${answer}`,
      );
    }
  });
  socket.on('error', () => undefined);
});

clients.listen(0, '127.0.0.1', () => {
  publishers.listen(0, '127.0.0.1', () => {
    const c = clients.address() as net.AddressInfo;
    const p = publishers.address() as net.AddressInfo;
    process.stdout.write(`ready ${c.port} ${p.port}\n`);
  });
});
process.on('SIGTERM', () => process.exit(0));
