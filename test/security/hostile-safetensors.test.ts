/**
 * Hostile safetensors files thrown at readSafetensorsHeader (and at the adapter loader): each is refused
 * quickly, with a message that names the file, without allocating more than the file's size.
 */
import t, { type Test } from 'tap';
import { closeSync, cpSync, mkdtempSync, openSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeSafetensors, readSafetensorsHeader, SafetensorsError, MAX_HEADER_BYTES } from '../../src/engine/model/safetensors.js';
import { loadPeftAdapter } from '../../src/engine/lora/peft-adapter.js';
import { readModelSpec } from '../../src/engine/model/hf-config.js';
import { FIXTURE_ADAPTERS, FIXTURE_MODEL } from '../helpers/engine.js';

const dir = mkdtempSync(join(tmpdir(), 'hostile-st-'));
let counter = 0;
const write = (bytes: Buffer) => {
  const p = join(dir, `case-${counter++}.safetensors`);
  writeFileSync(p, bytes);
  return p;
};
/** 8-byte length + header text (+ data); `claimed` overrides the length field. */
const raw = (headerText: string | Buffer, data: Buffer = Buffer.alloc(0), claimed?: bigint) => {
  const json = typeof headerText === 'string' ? Buffer.from(headerText, 'utf8') : headerText;
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(claimed ?? BigInt(json.length));
  return Buffer.concat([len, json, data]);
};
const withHeader = (header: unknown, data: Buffer = Buffer.alloc(0)) => raw(JSON.stringify(header), data);
/** A file of `size` bytes that is mostly a hole (no disk, no memory), starting with `head`. */
const sparse = (head: Buffer, size: number) => {
  const p = join(dir, `sparse-${counter++}.safetensors`);
  const fd = openSync(p, 'w');
  writeSync(fd, head, 0, head.length, 0);
  writeSync(fd, Buffer.from([0x20]), 0, 1, size - 1);
  closeSync(fd);
  return p;
};
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const nested = (depth: number, leaf = '1') => '['.repeat(depth) + leaf + ']'.repeat(depth);

/** Runs fn, returns [error, ms, bytes of new external/array-buffer memory]. */
function measure(fn: () => unknown): [unknown, number, number] {
  const before = process.memoryUsage();
  const started = performance.now();
  let error: unknown = null;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  const ms = performance.now() - started;
  const after = process.memoryUsage();
  return [error, ms, Math.max(0, after.arrayBuffers - before.arrayBuffers)];
}

/**
 * Refused with the file named and a bounded message, allocating no more than the file. How long it took is not
 * asserted (a loaded machine breaks any bound); the 100k-tensor cases finish within the test's timeout.
 */
function refused(t: Test, name: string, file: string, message: RegExp) {
  const size = statSync(file).size;
  const [error, , grew] = measure(() => readSafetensorsHeader(file));
  t.type(error, SafetensorsError, `${name}: refused with a SafetensorsError (got ${(error as Error)?.name}: ${(error as Error)?.message?.slice(0, 200)})`);
  t.match((error as Error)?.message ?? '', message, `${name}: says why`);
  t.match((error as Error)?.message ?? '', new RegExp(`^${escape(file)}: `), `${name}: names the file`);
  t.ok(((error as Error)?.message ?? '').length < 2000, `${name}: the message is bounded`);
  t.ok(grew <= size + 4096, `${name}: allocated ${grew} bytes, the file has ${size}`);
}

const f32 = (n: number) => Buffer.alloc(n * 4);

t.test('length field: huge, past the end, over the header limit', async (t) => {
  refused(t, 'claims 2^64-1', write(raw('{}', Buffer.alloc(0), (1n << 64n) - 1n)), /header claims 18446744073709551615 bytes/);
  refused(t, 'claims 2^53+1', write(raw('{}', Buffer.alloc(0), (1n << 53n) + 1n)), /header claims/);
  refused(t, 'claims 1 TiB in a small file', write(raw('{}', Buffer.alloc(64), 1n << 40n)), /header claims/);
  refused(t, 'claims one byte past the end', write(raw('{}', Buffer.alloc(0), 3n)), /header claims 3 bytes but the file has 2/);
  // A (sparse) file larger than the header limit, claiming a header just over it: refused before reading it.
  const big = sparse(raw('', Buffer.alloc(0), BigInt(MAX_HEADER_BYTES + 1)), MAX_HEADER_BYTES + 4096);
  refused(t, 'claims over MAX_HEADER_BYTES in a file that holds it', big, /header claims/);
  refused(t, 'empty file', write(Buffer.alloc(0)), /too short/);
  refused(t, '7 bytes', write(Buffer.alloc(7)), /too short/);
  refused(t, 'zero-length header', write(raw('')), /not valid JSON/);
  // A claim within the file: the header is read (at most the file's size) and refused as JSON.
  refused(t, '8 MB of zeros as the header', sparse(raw('', Buffer.alloc(0), 8n << 20n), (8 << 20) + 8), /not valid JSON/);
});

t.test('header JSON that is not a header', async (t) => {
  for (const [name, text] of [
    ['array', '[]'],
    ['string', '"x"'],
    ['number', '1'],
    ['null', 'null'],
    ['truncated', '{"w": {"dtype": "F32"'],
    ['invalid utf-8', Buffer.from([0x7b, 0xff, 0xfe, 0x7d])],
    ['deeply nested array', nested(200_000)],
    ['trailing garbage', '{} {}'],
  ] as const) {
    refused(t, name, write(raw(text as string | Buffer)), /not valid JSON|not a JSON object/);
  }
});

t.test('tensor entries with wrong types, negative, non-integer and nested junk', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['entry is null', { w: null }, /entry is not an object/],
    ['entry is an array', { w: [1, 2] }, /entry is not an object|dtype/],
    ['entry is a string', { w: 'F32' }, /entry is not an object/],
    ['dtype missing', { w: { shape: [1], data_offsets: [0, 4] } }, /unknown dtype/],
    ['dtype lower case', { w: { dtype: 'f32', shape: [1], data_offsets: [0, 4] } }, /unknown dtype "f32"/],
    ['dtype a number', { w: { dtype: 4, shape: [1], data_offsets: [0, 4] } }, /unknown dtype/],
    ['dtype an object', { w: { dtype: { F32: true }, shape: [1], data_offsets: [0, 4] } }, /unknown dtype/],
    ['dtype inherited name', { w: { dtype: 'constructor', shape: [1], data_offsets: [0, 4] } }, /unknown dtype/],
    ['dtype __proto__', { w: { dtype: '__proto__', shape: [1], data_offsets: [0, 4] } }, /unknown dtype/],
    ['shape missing', { w: { dtype: 'F32', data_offsets: [0, 4] } }, /shape must be/],
    ['shape a number', { w: { dtype: 'F32', shape: 1, data_offsets: [0, 4] } }, /shape must be/],
    ['shape negative', { w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, /shape must be/],
    ['shape non-integer', { w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 6] } }, /shape must be/],
    ['shape as strings', { w: { dtype: 'F32', shape: ['1'], data_offsets: [0, 4] } }, /shape must be/],
    ['shape nested', { w: { dtype: 'F32', shape: [[1]], data_offsets: [0, 4] } }, /shape must be/],
    ['shape unsafe integer', { w: { dtype: 'F32', shape: [2 ** 53], data_offsets: [0, 4] } }, /shape must be/],
    ['shape 1e400 (Infinity)', JSON.parse('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'), /./],
    ['offsets missing', { w: { dtype: 'F32', shape: [1] } }, /data_offsets must be/],
    ['offsets one number', { w: { dtype: 'F32', shape: [1], data_offsets: [4] } }, /data_offsets must be/],
    ['offsets three numbers', { w: { dtype: 'F32', shape: [1], data_offsets: [0, 4, 8] } }, /data_offsets must be/],
    ['offsets negative', { w: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, /data_offsets must be/],
    ['offsets non-integer', { w: { dtype: 'F32', shape: [1], data_offsets: [0.5, 4.5] } }, /data_offsets must be/],
    ['offsets as strings', { w: { dtype: 'F32', shape: [1], data_offsets: ['0', '4'] } }, /data_offsets must be/],
    ['offsets nested', { w: { dtype: 'F32', shape: [1], data_offsets: [[0], [4]] } }, /data_offsets must be/],
    ['offsets reversed', { w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, /data_offsets \[4, 0\]/],
    ['offsets past the end', { w: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }, /data ends at byte 32 but the data section has 16/],
    ['offsets at 2^53-1', { w: { dtype: 'U8', shape: [1], data_offsets: [2 ** 53 - 2, 2 ** 53 - 1] } }, /data ends at byte/],
    ['dtype mismatch F16 sized as F32', { w: { dtype: 'F16', shape: [2], data_offsets: [0, 8] } }, /shape \[2\] of F16 needs 4/],
    ['dtype mismatch F32 sized as F16', { w: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, /needs 8/],
    ['shape product over 2^53', { w: { dtype: 'F32', shape: [2 ** 26, 2 ** 26, 2 ** 26], data_offsets: [0, 8] } }, /needs/],
    ['shape product exactly 2^53 bytes', { w: { dtype: 'U8', shape: [2 ** 27, 2 ** 26], data_offsets: [0, 8] } }, /needs/],
    ['shape product wraps to a small number in 32 bits', { w: { dtype: 'F32', shape: [65536, 65536, 2], data_offsets: [0, 8] } }, /needs/],
    ['many dims', { w: { dtype: 'F32', shape: Array.from({ length: 100_000 }, () => 1), data_offsets: [0, 8] } }, /needs 4/],
    ['overlapping tensors', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, /overlap/],
    [
      'two tensors on the same bytes',
      { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } },
      /overlap/,
    ],
    ['metadata an array', { __metadata__: [1, 2], w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, /__metadata__/],
    ['metadata nested junk', { __metadata__: { format: { deep: [nested] } }, w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, /__metadata__/],
    ['metadata a string', { __metadata__: 'pt' }, /__metadata__/],
  ];
  for (const [name, header, message] of cases) {
    if (name === 'shape 1e400 (Infinity)') {
      refused(t, name, write(raw('{"w": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}}', f32(1))), /shape must be/);
      continue;
    }
    refused(t, name, write(withHeader(header, f32(4))), message);
  }
  const deep = write(raw(`{"w": {"dtype": ${nested(100_000, '"F32"')}, "shape": [1], "data_offsets": [0, 4]}}`, f32(1)));
  refused(t, 'dtype nested 100k deep', deep, /unknown dtype/);
  const deepShape = write(raw(`{"w": {"dtype": "F32", "shape": ${nested(100_000)}, "data_offsets": [0, 4]}}`, f32(1)));
  refused(t, 'shape nested 100k deep', deepShape, /shape must be/);
});

t.test('out of order but disjoint is a valid file; zero-size tensors do not overlap', async (t) => {
  const file = write(
    withHeader(
      {
        b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        z: { dtype: 'F32', shape: [0], data_offsets: [8, 8] },
        z2: { dtype: 'F32', shape: [0, 5], data_offsets: [8, 8] },
      },
      f32(4),
    ),
  );
  const header = readSafetensorsHeader(file);
  t.same([...header.tensors.keys()], ['b', 'a', 'z', 'z2']);
  const ok = write(encodeSafetensors([{ name: 'w', dtype: 'F16', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) }]));
  t.equal(readSafetensorsHeader(ok).tensors.get('w')?.end, 8, 'a normal file still reads');
});

t.test('100k tensors: parsed or refused quickly, bounded memory', async (t) => {
  const many: Record<string, unknown> = {};
  for (let i = 0; i < 100_000; i++) many[`t${i}`] = { dtype: 'U8', shape: [1], data_offsets: [i, i + 1] };
  const file = write(withHeader(many, Buffer.alloc(100_000)));
  const header = readSafetensorsHeader(file);
  t.equal(header.tensors.size, 100_000, 'a well-formed file with 100k tensors is read');
  const overlapping: Record<string, unknown> = {};
  for (let i = 0; i < 100_000; i++) overlapping[`t${i}`] = { dtype: 'U8', shape: [16], data_offsets: [0, 16] };
  refused(t, '100k tensors on the same 16 bytes', write(withHeader(overlapping, Buffer.alloc(16))), /overlap/);
  const lastBad: Record<string, unknown> = { ...many, t99999: { dtype: 'F32', shape: [1], data_offsets: [99_999, 100_000] } };
  refused(t, '100k tensors, the last one broken', write(withHeader(lastBad, Buffer.alloc(100_000))), /tensor t99999: data_offsets/);
});

t.test('the adapter loader refuses hostile weights files with the file named, quickly', async (t) => {
  const spec = readModelSpec(FIXTURE_MODEL);
  const adapterWith = (name: string, bytes: Buffer) => {
    const d = join(dir, name);
    cpSync(join(FIXTURE_ADAPTERS, 'support'), d, { recursive: true });
    writeFileSync(join(d, 'adapter_model.safetensors'), bytes);
    return d;
  };
  const many: Record<string, unknown> = {};
  for (let i = 0; i < 100_000; i++)
    many[`base_model.model.model.layers.${i}.self_attn.q_proj.lora_A.weight`] = { dtype: 'F32', shape: [0, 64], data_offsets: [0, 0] };
  const cases: Array<[string, Buffer, RegExp]> = [
    ['100k tensors for layers that do not exist', withHeader(many), /layer \d+ does not exist/],
    [
      '100k tensors with junk names',
      withHeader(Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`junk.${i}`, { dtype: 'U8', shape: [0], data_offsets: [0, 0] }]))),
      /not a LoRA weight/,
    ],
    [
      'an A/B pair sharing its bytes with every other module',
      (() => {
        const header: Record<string, unknown> = {};
        for (let layer = 0; layer < spec.numLayers; layer++) {
          header[`base_model.model.model.layers.${layer}.self_attn.q_proj.lora_A.weight`] = { dtype: 'F32', shape: [8, 64], data_offsets: [0, 2048] };
          header[`base_model.model.model.layers.${layer}.self_attn.q_proj.lora_B.weight`] = { dtype: 'F32', shape: [64, 8], data_offsets: [0, 2048] };
        }
        return withHeader(header, f32(512));
      })(),
      /overlap/,
    ],
    ['truncated header', raw('{"base_model.model.model.layers.0', Buffer.alloc(0), 1000n), /header claims/],
  ];
  for (const [name, bytes, message] of cases) {
    const d = adapterWith(`adapter-${counter++}`, bytes);
    t.throws(() => loadPeftAdapter('x', d, spec, 64), message, name);
    t.throws(() => loadPeftAdapter('x', d, spec, 64), new RegExp(escape(join(d, 'adapter_model.safetensors'))), `${name}: names the file`);
  }
});
