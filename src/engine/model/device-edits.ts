/**
 * Small onnxruntime sessions that change tensors where the execution provider keeps them (GPU memory with
 * WebGPU or CUDA), so that state the decoder graph reads every step never makes a round trip through the host:
 *
 * - upload: copies host tensors to the device (Identity nodes whose outputs stay there);
 * - writeSlots: replaces one adapter slot's block in each layer's LoRA matrices (only that slot's bytes cross
 *   the bus);
 * - insertRows: puts the rows of a KV tensor (one prompt's cache, or a batch of prompts' shorter ones) into
 *   chosen rows of the batch KV tensors.
 *
 * The edits are `Where` selections with a boolean mask, which every provider implements; they write a new
 * tensor (ONNX has no in-place update), so their cost is one pass over the edited tensor on the device.
 * On the CPU provider the same sessions run on host tensors, which is how this path is tested.
 */
import { ort } from './ort.js';
import { DataType, encodeModel, type DataTypeCode, type OnnxModel } from './onnx-proto.js';

export type TensorLocation = 'cpu' | 'gpu-buffer';

const ONNX_TYPE: Record<string, DataTypeCode> = { float32: DataType.FLOAT, float16: DataType.FLOAT16, int64: DataType.INT64, int32: DataType.INT32 };

function onnxType(tensor: ort.Tensor): DataTypeCode {
  const code = ONNX_TYPE[tensor.type];
  if (code === undefined) throw new Error(`device edits do not handle ${tensor.type} tensors`);
  return code;
}

function model(name: string, nodes: OnnxModel['nodes'], inputs: OnnxModel['inputs'], outputs: OnnxModel['outputs']): Uint8Array {
  return encodeModel({ graphName: name, nodes, inputs, outputs, externalInitializers: [], inlineInitializers: [], opsets: [{ domain: '', version: 17 }] });
}

const dynamic = (prefix: string, rank: number) => Array.from({ length: rank }, (_, d) => `${prefix}${d}`);

export class DeviceEdits {
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();

  constructor(
    private readonly provider: string,
    readonly location: TensorLocation,
  ) {}

  private session(key: string, build: () => Uint8Array): Promise<ort.InferenceSession> {
    let s = this.sessions.get(key);
    if (!s) {
      s = ort.InferenceSession.create(build(), {
        executionProviders: [this.provider],
        preferredOutputLocation: this.location,
        intraOpNumThreads: 1,
      });
      this.sessions.set(key, s);
    }
    return s;
  }

  /** Device copies of host tensors (on the CPU provider: the tensors themselves). */
  async upload(host: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    if (this.location === 'cpu') return { ...host };
    const names = Object.keys(host);
    const key = `upload:${names.map((n) => `${n}/${host[n].type}/${host[n].dims.length}`).join(',')}`;
    const session = await this.session(key, () =>
      model(
        'upload',
        names.map((_, i) => ({ opType: 'Identity', inputs: [`in${i}`], outputs: [`out${i}`], name: `identity${i}` })),
        names.map((n, i) => ({ name: `in${i}`, dataType: onnxType(host[n]), shape: dynamic(`i${i}_`, host[n].dims.length) })),
        names.map((n, i) => ({ name: `out${i}`, dataType: onnxType(host[n]), shape: dynamic(`o${i}_`, host[n].dims.length) })),
      ),
    );
    const out = await session.run(Object.fromEntries(names.map((n, i) => [`in${i}`, host[n]])));
    return Object.fromEntries(names.map((n, i) => [n, out[`out${i}`]]));
  }

  /**
   * Replaces one slot's block in each of several tensors. A tensor seen as [before, slots, after] (its slot
   * axis being 1) or [slots, rank, after] (axis 0) gets `block` ([before, 1, after] or [1, rank, after]) at
   * slot index `slot` of `slots`. One run for all of them; returns the edited tensors by name (the caller
   * disposes the old ones).
   */
  async writeSlots(
    blocks: Array<{ name: string; block: ort.Tensor; axis: 0 | 1 }>,
    current: Record<string, ort.Tensor>,
    slot: number,
    slots: number,
  ): Promise<Record<string, ort.Tensor>> {
    const type = onnxType(blocks[0].block);
    const key = `slots:${blocks[0].block.type}:${blocks.map((b) => b.axis).join('')}`;
    const session = await this.session(key, () =>
      model(
        'write_slots',
        blocks.flatMap((b, i) => [
          { opType: 'Reshape', inputs: [`t${i}`, `grouped_shape${i}`], outputs: [`grouped${i}`], name: `group${i}` },
          { opType: 'Where', inputs: [`mask${b.axis}`, `block${i}`, `grouped${i}`], outputs: [`edited${i}`], name: `select${i}` },
          { opType: 'Shape', inputs: [`t${i}`], outputs: [`shape${i}`], name: `shape${i}` },
          { opType: 'Reshape', inputs: [`edited${i}`, `shape${i}`], outputs: [`out${i}`], name: `ungroup${i}` },
        ]),
        [
          { name: 'mask0', dataType: DataType.BOOL, shape: ['slots', 1, 1] },
          { name: 'mask1', dataType: DataType.BOOL, shape: [1, 'slots', 1] },
          ...blocks.flatMap((_, i) => [
            { name: `t${i}`, dataType: type, shape: [`t${i}_0`, `t${i}_1`] },
            { name: `block${i}`, dataType: type, shape: [`b${i}_0`, `b${i}_1`, `b${i}_2`] },
            { name: `grouped_shape${i}`, dataType: DataType.INT64, shape: [3] },
          ]),
        ],
        blocks.map((_, i) => ({ name: `out${i}`, dataType: type, shape: [`t${i}_0`, `t${i}_1`] })),
      ),
    );
    const mask = new Uint8Array(slots);
    mask[slot] = 1;
    const feeds: Record<string, ort.Tensor> = {
      mask0: new ort.Tensor('bool', mask, [slots, 1, 1]),
      mask1: new ort.Tensor('bool', mask, [1, slots, 1]),
    };
    blocks.forEach((b, i) => {
      const t = current[b.name];
      const grouped = b.axis === 1 ? [t.dims[0], slots, t.dims[1] / slots] : [slots, t.dims[0] / slots, t.dims[1]];
      feeds[`t${i}`] = t;
      feeds[`block${i}`] = b.block;
      feeds[`grouped_shape${i}`] = new ort.Tensor('int64', BigInt64Array.from(grouped, BigInt), [3]);
    });
    const out = await session.run(feeds);
    return Object.fromEntries(blocks.map((b, i) => [b.name, out[`out${i}`]]));
  }

  /**
   * Copies row j of every tensor of `rows` ([n, heads, length, dim], length <= the batch's) into batch row
   * `targets[j]` of the matching `batch` tensor ([batch, heads, maxLength, dim]), zero-padding the positions
   * after `length`. One run for all tensors.
   */
  async insertRows(batch: Record<string, ort.Tensor>, rows: Record<string, ort.Tensor>, targets: number[]): Promise<Record<string, ort.Tensor>> {
    const names = Object.keys(batch);
    const first = batch[names[0]];
    const type = onnxType(first);
    const session = await this.session(`rows-padded:${names.length}:${first.type}`, () =>
      model(
        'insert_rows',
        names.flatMap((_, i) => [
          { opType: 'Pad', inputs: [`rows${i}`, 'pads'], outputs: [`padded${i}`], name: `pad${i}` },
          { opType: 'Gather', inputs: [`padded${i}`, 'source'], outputs: [`gathered${i}`], name: `gather${i}`, attributes: { axis: 0 } },
          { opType: 'Where', inputs: ['mask', `gathered${i}`, `batch${i}`], outputs: [`out${i}`], name: `select${i}` },
        ]),
        [
          { name: 'mask', dataType: DataType.BOOL, shape: ['batch', 1, 1, 1] },
          { name: 'source', dataType: DataType.INT64, shape: ['batch'] },
          { name: 'pads', dataType: DataType.INT64, shape: [8] },
          ...names.flatMap((_, i) => [
            { name: `batch${i}`, dataType: type, shape: ['batch', 'heads', 'max_seq', 'dim'] },
            { name: `rows${i}`, dataType: type, shape: ['rows', 'heads', 'seq', 'dim'] },
          ]),
        ],
        names.map((_, i) => ({ name: `out${i}`, dataType: type, shape: ['batch', 'heads', 'max_seq', 'dim'] })),
      ),
    );
    const [B, , maxLength] = first.dims;
    const length = rows[names[0]].dims[2];
    const mask = new Uint8Array(B);
    const source = new BigInt64Array(B);
    targets.forEach((p, j) => {
      mask[p] = 1;
      source[p] = BigInt(j);
    });
    const feeds: Record<string, ort.Tensor> = {
      mask: new ort.Tensor('bool', mask, [B, 1, 1, 1]),
      source: new ort.Tensor('int64', source, [B]),
      pads: new ort.Tensor('int64', BigInt64Array.of(0n, 0n, 0n, 0n, 0n, 0n, BigInt(maxLength - length), 0n), [8]),
    };
    names.forEach((n, i) => {
      feeds[`batch${i}`] = batch[n];
      feeds[`rows${i}`] = rows[n];
    });
    const out = await session.run(feeds);
    return Object.fromEntries(names.map((n, i) => [n, out[`out${i}`]]));
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
  }
}
