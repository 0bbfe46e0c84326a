import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeSafetensors, readSafetensorsHeader, readTensorAsFloat32, floatToHalf, halfToFloat } from '../../src/engine/model/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'st-'));
const write = (name: string, bytes: Buffer) => {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
};
const withHeader = (header: unknown, data = Buffer.alloc(0), claimedLength?: bigint) => {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(claimedLength ?? BigInt(json.length));
  return Buffer.concat([len, json, data]);
};

t.test('round trip F32, F16, BF16', async (t) => {
  const data = Float32Array.from([0, 1, -2.5, 3.14159, 65504, 1e-3]);
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    const file = write(`rt-${dtype}.safetensors`, encodeSafetensors([{ name: 'w', dtype, shape: [2, 3], data }]));
    const back = readTensorAsFloat32(readSafetensorsHeader(file), 'w');
    const tol = dtype === 'F32' ? 0 : dtype === 'F16' ? 1e-3 : 1e-2;
    data.forEach((v, i) => t.ok(Math.abs(back[i] - v) <= Math.abs(v) * tol, `${dtype} ${v} -> ${back[i]}`));
  }
  t.equal(halfToFloat(floatToHalf(1.5)), 1.5);
});

t.test('hostile and broken files are refused before allocating', async (t) => {
  const cases: Array<[string, Buffer, RegExp]> = [
    ['too short', Buffer.alloc(4), /too short/],
    ['huge header claim', withHeader({}, Buffer.alloc(0), 1n << 40n), /header claims/],
    ['header not JSON', Buffer.concat([Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{nope')]), /not valid JSON/],
    ['offsets past the end', withHeader({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, Buffer.alloc(8)), /truncated/],
    ['offsets disagree with shape', withHeader({ w: { dtype: 'F32', shape: [1 << 30, 1 << 10], data_offsets: [0, 16] } }, Buffer.alloc(16)), /needs/],
    ['negative shape', withHeader({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, Buffer.alloc(4)), /non-negative/],
    ['unknown dtype', withHeader({ w: { dtype: 'Q4', shape: [1], data_offsets: [0, 1] } }, Buffer.alloc(1)), /unknown dtype/],
  ];
  for (const [name, bytes, message] of cases) {
    const file = write(`${name.replace(/ /g, '-')}.safetensors`, bytes);
    t.throws(() => readSafetensorsHeader(file), message, name);
    t.throws(() => readSafetensorsHeader(file), new RegExp(file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')), `${name}: names the file`);
  }
});
