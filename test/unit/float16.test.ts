/** toFloat16 against the scalar reference converter (safetensors.ts floatToHalf) and known bit patterns. */
import t from 'tap';
import { firstOverflow, toFloat16 } from '../../src/engine/model/float16.js';
import { floatToHalf, halfToFloat } from '../../src/engine/model/safetensors.js';
import { seededRandom } from '../../src/engine/sampling.js';

t.test('known values: zero, one, max, subnormals, ties to even, infinities and NaN', async (t) => {
  const cases: Array<[number, number]> = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [65519, 0x7bff],
    [65520, 0x7c00],
    [2 ** -14, 0x0400],
    [2 ** -24, 0x0001],
    [2 ** -25, 0x0000],
    [3 * 2 ** -26, 0x0001],
    [1 + 2 ** -11, 0x3c00],
    [1 + 3 * 2 ** -11, 0x3c02],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
  ];
  const out = toFloat16(Float32Array.from(cases, (c) => c[0]));
  cases.forEach(([v, bits], i) => t.equal(out[i], bits, `${v} -> 0x${bits.toString(16)}`));
  t.ok(Number.isNaN(halfToFloat(toFloat16(Float32Array.of(NaN))[0])), 'NaN stays NaN');
});

t.test('equals the scalar converter on 200k random values over the whole range', async (t) => {
  const rng = seededRandom(21);
  const values = Float32Array.from({ length: 200_000 }, () => (rng() - 0.5) * 2 ** Math.floor(rng() * 60 - 40));
  const fast = toFloat16(values);
  let differ = 0;
  for (let i = 0; i < values.length; i++) if (fast[i] !== floatToHalf(values[i])) differ++;
  t.equal(differ, 0);
});

t.test('firstOverflow finds values that would become infinity', async (t) => {
  t.equal(firstOverflow(Float32Array.of(1, -65504, 65519)), -1);
  t.equal(firstOverflow(Float32Array.of(1, 2, -70000)), 2);
  t.equal(firstOverflow(Float32Array.of(Infinity)), -1, 'an infinity is not an overflow (the source has it already)');
});
