#!/usr/bin/env node
/**
 * Draws Braid's icons (three strands braided into one) and writes them as real PNGs with nothing
 * but node's zlib: build/icons/NxN.png for the app (electron-builder takes the directory for Linux
 * and the 512 one for macOS and Windows) and tray-{on,off,warning}.png for the tray.
 *
 *   node build/make-icons.js          (the PNGs are committed; rerun after changing the drawing)
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');

const OUT = path.join(__dirname, 'icons');

// ---- PNG ---------------------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** RGBA 8-bit, straight alpha; `rgba` is width*height*4 bytes. */
function encodePng(width, height, rgba) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // colour type RGBA
  const raw = Buffer.alloc((width * 4 + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width * 4 + 1)] = 0; // filter: none
    rgba.copy(raw, y * (width * 4 + 1) + 1, y * width * 4, (y + 1) * width * 4);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// ---- drawing -----------------------------------------------------------------------------------

const STRANDS = [
  [0x2ec4b6, 0], // teal: WiFi
  [0xff9f1c, 1], // amber: cellular
  [0x9b5de5, 2], // violet: Ethernet
];

/**
 * Coverage and colour at (x, y) in unit coordinates (0..1). Three helical strands seen from the side:
 * each is a sine wave a third of a turn apart; where two cross, the one nearer the viewer (larger
 * cos of its phase) is drawn on top, which is what makes them look braided rather than overlaid.
 */
function sample(x, y, style) {
  const { background, grey, amplitude, width, turns } = style;
  let out = null;
  if (background) {
    // rounded square, dark
    const r = 0.2;
    const dx = Math.max(Math.abs(x - 0.5) - (0.5 - r - 0.02), 0);
    const dy = Math.max(Math.abs(y - 0.5) - (0.5 - r - 0.02), 0);
    if (dx * dx + dy * dy <= r * r) out = [0x1b, 0x1f, 0x2a, 255];
  }
  const margin = background ? 0.16 : 0.04;
  if (x < margin || x > 1 - margin) return out;
  const t = (x - margin) / (1 - 2 * margin);
  let best = null;
  for (const [rgb, i] of STRANDS) {
    const phase = 2 * Math.PI * (turns * t) + (i * 2 * Math.PI) / 3;
    const cy = 0.5 + amplitude * Math.sin(phase);
    const slope = (amplitude * Math.cos(phase) * 2 * Math.PI * turns) / (1 - 2 * margin);
    const d = Math.abs(y - cy) / Math.sqrt(1 + slope * slope);
    const depth = Math.cos(phase);
    if (d <= width / 2 && (best === null || depth > best.depth)) best = { rgb, depth, edge: width / 2 - d };
  }
  if (!best) return out;
  let [r, g, b] = [(best.rgb >> 16) & 255, (best.rgb >> 8) & 255, best.rgb & 255];
  if (grey) r = g = b = Math.round(0.3 * r + 0.59 * g + 0.11 * b) * 0.8;
  // shade the strands further back, and darken the rim so crossings read as over/under
  const shade = 0.72 + 0.28 * (best.depth + 1) / 2;
  const rim = best.edge < width * 0.12 ? 0.6 : 1;
  return [r * shade * rim, g * shade * rim, b * shade * rim, 255];
}

function render(size, style) {
  const ss = size >= 128 ? 3 : 4; // supersampling per axis
  const rgba = Buffer.alloc(size * size * 4);
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          const c = sample((px + (sx + 0.5) / ss) / size, (py + (sy + 0.5) / ss) / size, style);
          if (!c) continue;
          r += c[0] * c[3];
          g += c[1] * c[3];
          b += c[2] * c[3];
          a += c[3];
        }
      }
      const o = (py * size + px) * 4;
      if (a > 0) {
        rgba[o] = Math.round(r / a);
        rgba[o + 1] = Math.round(g / a);
        rgba[o + 2] = Math.round(b / a);
        rgba[o + 3] = Math.round(a / (ss * ss));
      }
    }
  }
  if (style.badge) {
    // a warning dot, bottom right
    const [cx, cy, rad] = [size * 0.78, size * 0.78, size * 0.2];
    for (let py = 0; py < size; py++) {
      for (let px = 0; px < size; px++) {
        const d = Math.hypot(px + 0.5 - cx, py + 0.5 - cy);
        if (d > rad + 0.5) continue;
        const cover = Math.min(1, rad + 0.5 - d);
        const o = (py * size + px) * 4;
        const mix = (v, w) => Math.round(v * (1 - cover) + w * cover);
        rgba[o] = mix(rgba[o], 0xe6);
        rgba[o + 1] = mix(rgba[o + 1], 0x39);
        rgba[o + 2] = mix(rgba[o + 2], 0x46);
        rgba[o + 3] = Math.max(rgba[o + 3], Math.round(255 * cover));
      }
    }
  }
  return encodePng(size, size, rgba);
}

function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const app = { background: true, grey: false, amplitude: 0.17, width: 0.085, turns: 1.25 };
  for (const size of [512, 256, 128, 64, 48, 32, 16]) {
    fs.writeFileSync(path.join(OUT, `${size}x${size}.png`), render(size, size <= 32 ? { ...app, width: 0.11 } : app));
  }
  const tray = { background: false, grey: false, amplitude: 0.26, width: 0.17, turns: 1 };
  for (const [name, style] of [['tray-on', tray], ['tray-off', { ...tray, grey: true }], ['tray-warning', { ...tray, badge: true }]]) {
    fs.writeFileSync(path.join(OUT, `${name}.png`), render(32, style));
    fs.writeFileSync(path.join(OUT, `${name}@2x.png`), render(64, style));
  }
  process.stdout.write(`icons written to ${OUT}\n`);
}

main();
