import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crc32, inflateSync } from 'node:zlib';
import { InvalidInputError } from '../src/errors.js';
import { chartFormatFor, defaultTitle, renderChart } from '../src/tools/memlog/chart.js';
import {
  alignedAxis,
  formatCountLabel,
  niceStep,
  pairedAxes,
  zeroBasedAxis,
} from '../src/tools/memlog/chart-axis.js';
import { formatSample, type Sample } from '../src/tools/memlog/memlog.js';
import { runCli } from './support/cli.js';

const T0 = 1_224_518_244;

/** A ten-minute ramp to 10,001 connections, one sample a minute, memory peaking at 125,360 KB. */
function rampSamples(): Sample[] {
  const rss = [40388, 41120, 65252, 89008, 90748, 90964, 90964, 98664, 106752, 119468, 125360];
  const conns = [1, 263, 5267, 9836, 10001, 10001, 10001, 10001, 10001, 10001, 10001];
  return rss.map((rssKb, i) => ({
    date: `Mon Oct 20 17:${String(i).padStart(2, '0')}:24 BST 2008`,
    time: T0 + i * 60,
    rssKb,
    connections: conns[i]!,
    processes: 1,
  }));
}

interface DecodedPng {
  readonly width: number;
  readonly height: number;
  readonly chunks: string[];
  /** RGBA, row-major. */
  readonly rgba: Buffer;
}

/** A small PNG reader: checks signature and CRCs, inflates IDAT and undoes the row filters. */
function decodePng(png: Buffer): DecodedPng {
  assert.deepEqual(
    [...png.subarray(0, 8)],
    [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a],
    'PNG signature',
  );
  const chunks: string[] = [];
  const idat: Buffer[] = [];
  let width = 0;
  let height = 0;
  let channels = 0;
  for (let at = 8; at < png.length; ) {
    const len = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + len);
    assert.equal(png.readUInt32BE(at + 8 + len), crc32(png.subarray(at + 4, at + 8 + len)), `${type} CRC`);
    chunks.push(type);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      assert.equal(data[8], 8, 'bit depth 8');
      channels = data[9] === 6 ? 4 : data[9] === 2 ? 3 : 0;
      assert.ok(channels > 0, `colour type ${data[9]}`);
    }
    if (type === 'IDAT') idat.push(data);
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  assert.equal(raw.length, height * (stride + 1), 'inflated size matches IHDR');
  const rows = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? rows[y * stride + x - channels]! : 0;
      const b = y > 0 ? rows[(y - 1) * stride + x]! : 0;
      const c = x >= channels && y > 0 ? rows[(y - 1) * stride + x - channels]! : 0;
      let pred = 0;
      if (filter === 1) pred = a;
      else if (filter === 2) pred = b;
      else if (filter === 3) pred = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      rows[y * stride + x] = (line[x]! + pred) & 0xff;
    }
  }
  const rgba = Buffer.alloc(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    rows.copy(rgba, i * 4, i * channels, i * channels + 3);
    rgba[i * 4 + 3] = channels === 4 ? rows[i * channels + 3]! : 255;
  }
  return { width, height, chunks, rgba };
}

/** Pixels within a small distance of `rgb`. */
function countColour(img: DecodedPng, rgb: [number, number, number]): number {
  let n = 0;
  for (let i = 0; i < img.rgba.length; i += 4) {
    const d =
      Math.abs(img.rgba[i]! - rgb[0]) +
      Math.abs(img.rgba[i + 1]! - rgb[1]) +
      Math.abs(img.rgba[i + 2]! - rgb[2]);
    if (d < 30) n++;
  }
  return n;
}

/** Tags open and close in order (enough of XML to catch a broken template). */
function assertWellFormed(svg: string): void {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    const [, closing, name, , selfClosing] = m;
    if (closing) assert.equal(stack.pop(), name, `</${name}> closes the open tag`);
    else if (!selfClosing) stack.push(name!);
  }
  assert.deepEqual(stack, [], 'every tag closed');
  // No stray markup characters left outside tags.
  const text = svg.replace(/<[^>]*>/g, '');
  assert.doesNotMatch(text, /[<>]|&(?!#\d+;|amp;|lt;|gt;|quot;|apos;)/);
}

async function cli(argv: string[]) {
  return runCli(argv);
}

describe('chart axes', () => {
  test('round steps and tops', () => {
    assert.equal(niceStep(180), 200);
    assert.equal(niceStep(23), 25);
    assert.equal(niceStep(0.3), 0.5);
    assert.equal(niceStep(0.07), 0.1);
    assert.deepEqual(zeroBasedAxis(1440, 5, 10), {
      max: 1500,
      step: 250,
      ticks: [0, 250, 500, 750, 1000, 1250, 1500],
    });
    assert.deepEqual(zeroBasedAxis(122.4, 4, 6).ticks, [0, 25, 50, 75, 100, 125]);
    assert.deepEqual(zeroBasedAxis(0.3, 4, 6).ticks, [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]);
    // A count axis shares the memory axis's five gridlines and never shows half a connection.
    assert.deepEqual(alignedAxis(10001, 5, true).ticks, [0, 2500, 5000, 7500, 10000, 12500]);
    assert.deepEqual(alignedAxis(3, 5, true).ticks, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(alignedAxis(0, 4, true).ticks, [0, 1, 2, 3, 4]);
  });

  test('paired axes pick the interval count that fits both series', () => {
    const [mem, conns] = pairedAxes(126, 10301, true);
    assert.deepEqual(mem.ticks, [0, 25, 50, 75, 100, 125, 150]);
    assert.deepEqual(conns.ticks, [0, 2000, 4000, 6000, 8000, 10000, 12000]);
    const [big, million] = pairedAxes(754, 1_029_000, true);
    assert.equal(big.ticks.length, million.ticks.length);
    assert.deepEqual([big.max, million.max], [1000, 1_250_000]);
  });

  test('count labels', () => {
    assert.equal(formatCountLabel(950), '950');
    assert.equal(formatCountLabel(2500), '2,500');
    assert.equal(formatCountLabel(2500, 12500), '2.5k');
    assert.equal(formatCountLabel(10001), '10k');
    assert.equal(formatCountLabel(1_250_000), '1.25M');
    assert.equal(formatCountLabel(0, 1e6), '0');
  });
});

describe('renderChart', () => {
  test('SVG: well formed, titled, two series, escaped text', () => {
    const svg = renderChart(rampSamples(), { title: 'C10K <test> & "friends"' });
    assertWellFormed(svg);
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="900" height="500"/);
    assert.ok(svg.includes('C10K &#60;test&#62; &#38; &#34;friends&#34;'), 'title escaped');
    assert.ok(!svg.includes('<test>'));
    const series = [...svg.matchAll(/<path class="series (\w+)" d="([^"]+)"/g)];
    assert.deepEqual(
      series.map((m) => m[1]),
      ['connections', 'memory'],
    );
    for (const m of series)
      assert.equal((m[2]!.match(/[ML]/g) ?? []).length, 11, `${m[1]} has one vertex per sample`);
    assert.match(svg, />Minutes elapsed</);
    assert.match(svg, />Memory, RSS \(MB\)</);
    assert.match(svg, />Established connections</);
    // 122 MB and 10,001 connections (plus 3% headroom) fit best on six shared intervals.
    assert.match(svg, />12k</, 'right axis top');
    assert.match(svg, />150</, 'left axis top');
  });

  test('default title comes from the data', () => {
    assert.equal(
      defaultTitle(rampSamples()),
      'Memory and connections over 10 minutes (peak 122 MB at 10k connections)',
    );
    assert.match(renderChart(rampSamples()), /Memory and connections over 10 minutes \(peak 122 MB/);
    assert.throws(() => renderChart([]), InvalidInputError);
  });

  test('one sample still draws a point', () => {
    const svg = renderChart(rampSamples().slice(0, 1));
    assertWellFormed(svg);
    assert.match(svg, /at one sample \(peak 39\.4 MB at 1 connection\)/);
    assert.equal([...svg.matchAll(/<circle /g)].length, 2);
  });

  test('PNG: valid file of the asked size showing both series', () => {
    const png = renderChart(rampSamples(), { format: 'png' });
    const img = decodePng(png);
    assert.equal(img.width, 900);
    assert.equal(img.height, 500);
    assert.equal(img.chunks[0], 'IHDR');
    assert.equal(img.chunks.at(-1), 'IEND');
    const white = countColour(img, [255, 255, 255]);
    assert.ok(white > img.width * img.height * 0.5, 'mostly white background');
    assert.ok(white < img.width * img.height * 0.99, 'not blank');
    assert.ok(countColour(img, [0x1f, 0x6f, 0xb4]) > 500, 'memory line drawn');
    assert.ok(countColour(img, [0xd9, 0x62, 0x0b]) > 500, 'connections line drawn');
    assert.ok(countColour(img, [0x22, 0x22, 0x22]) > 200, 'text drawn');
  });

  test('format from file name', () => {
    assert.equal(chartFormatFor('mem.PNG'), 'png');
    assert.equal(chartFormatFor('out/mem.svg'), 'svg');
    assert.equal(chartFormatFor('mem.jpg'), undefined);
  });
});

describe('switchboard chart', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'switchboard-chart-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('draws a memlog as PNG and SVG', async () => {
    const log = join(dir, 'mem.log');
    await writeFile(
      log,
      rampSamples()
        .map((s) => `${formatSample(s)}\n`)
        .join(''),
    );
    const r = await cli(['chart', log]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /wrote .*mem\.png \(PNG 900×500, 11 samples\)/);
    assert.equal(decodePng(await readFile(join(dir, 'mem.png'))).width, 900);

    const svgPath = join(dir, 'mem.svg');
    const s = await cli(['chart', log, '--out', svgPath, '--title', 'Mem usage with 10k active connections']);
    assert.equal(s.code, 0, s.stderr);
    const svg = await readFile(svgPath, 'utf8');
    assertWellFormed(svg);
    assert.match(svg, />Mem usage with 10k active connections</);
  });

  test("reads the article's one-liner output and a one-sample log", async () => {
    const article = join(dir, 'mochimem.log');
    await writeFile(article, 'Mon Oct 20 16:57:24 BST 2008\t1224518244\t 40388\t1\n');
    const r = await cli([
      'chart',
      article,
      '--out',
      join(dir, 'one.png'),
      '--width',
      '600',
      '--height',
      '300',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const img = decodePng(await readFile(join(dir, 'one.png')));
    assert.deepEqual([img.width, img.height], [600, 300]);
  });

  test('empty and unparsable logs fail with exit 1 naming the file and line', async () => {
    const empty = join(dir, 'empty.log');
    await writeFile(empty, '\n\n');
    const e = await cli(['chart', empty, '--out', join(dir, 'e.png')]);
    assert.equal(e.code, 1);
    assert.match(e.stderr, /empty\.log is empty: no samples to draw/);

    const bad = join(dir, 'bad.log');
    await writeFile(bad, `${formatSample(rampSamples()[0]!)}\nnot a sample\n`);
    const b = await cli(['chart', bad, '--out', join(dir, 'b.png')]);
    assert.equal(b.code, 1);
    assert.match(b.stderr, /bad\.log line 2: .*"not a sample"/);

    const missing = await cli(['chart', join(dir, 'nope.log')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read .*nope\.log/);
  });

  test('wrong use exits 2', async () => {
    const r1 = await cli(['chart']);
    assert.equal(r1.code, 2);
    assert.match(r1.stderr, /missing argument <log>/);
    const r2 = await cli(['chart', 'mem.log', '--out', 'mem.jpg']);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /--out must end in \.png or \.svg/);
    const r3 = await cli(['chart', 'mem.log', '--width', '10']);
    assert.equal(r3.code, 2);
    assert.match(r3.stderr, /--width must be at least 400/);
  });
});
