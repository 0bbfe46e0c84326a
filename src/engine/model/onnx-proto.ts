/**
 * A minimal protobuf encoder for the part of onnx.proto the graph builder writes (ModelProto, GraphProto,
 * NodeProto, AttributeProto, TensorProto with external data, ValueInfoProto). Field numbers follow
 * onnx/onnx.proto. Writing it by hand keeps a large generated dependency out of the project.
 */

export const DataType = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, BFLOAT16: 16 } as const;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

class Writer {
  private chunks: Uint8Array[] = [];
  private scratch: number[] = [];

  private flushScratch(): void {
    if (this.scratch.length) {
      this.chunks.push(Uint8Array.from(this.scratch));
      this.scratch = [];
    }
  }

  varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.scratch.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.scratch.push(Number(v));
  }

  tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  bytes(field: number, data: Uint8Array): void {
    this.tag(field, 2);
    this.varint(data.length);
    this.flushScratch();
    this.chunks.push(data);
  }

  string(field: number, s: string): void {
    this.bytes(field, new TextEncoder().encode(s));
  }

  int(field: number, value: number | bigint): void {
    this.tag(field, 0);
    this.varint(value);
  }

  float(field: number, value: number): void {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.scratch.push(...b);
  }

  message(field: number, build: (w: Writer) => void): void {
    const inner = new Writer();
    build(inner);
    this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    this.flushScratch();
    const total = this.chunks.reduce((n, c) => n + c.length, 0);
    const out = new Uint8Array(total);
    let offset = 0;
    for (const c of this.chunks) {
      out.set(c, offset);
      offset += c.length;
    }
    return out;
  }
}

export type AttributeValue = number | string | number[] | { float: number } | { floats: number[] } | { graph: SubGraph };

/** A graph attribute's body (an If branch): nodes that may read the outer graph's values, and its outputs. */
export interface SubGraph {
  name: string;
  nodes: OnnxNode[];
  outputs: ValueInfo[];
}

export interface OnnxNode {
  opType: string;
  domain?: string;
  inputs: string[];
  outputs: string[];
  name: string;
  attributes?: Record<string, AttributeValue>;
}

/** A tensor whose bytes live in the external data file at [offset, offset+length). */
export interface ExternalInitializer {
  name: string;
  dataType: DataTypeCode;
  dims: number[];
  location: string;
  offset: number;
  length: number;
}

/** A small tensor stored inside the model file (shapes, indices, scalars). */
export interface InlineInitializer {
  name: string;
  dataType: DataTypeCode;
  dims: number[];
  raw: Uint8Array;
}

export interface ValueInfo {
  name: string;
  dataType: DataTypeCode;
  /** A number is a fixed size, a string a symbolic (dynamic) dimension. */
  shape: Array<number | string>;
}

export interface OnnxModel {
  graphName: string;
  nodes: OnnxNode[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  externalInitializers: ExternalInitializer[];
  inlineInitializers: InlineInitializer[];
  opsets: Array<{ domain: string; version: number }>;
  metadata?: Record<string, string>;
}

function writeNode(w: Writer, node: OnnxNode): void {
  for (const i of node.inputs) w.string(1, i);
  for (const o of node.outputs) w.string(2, o);
  w.string(3, node.name);
  w.string(4, node.opType);
  for (const [name, value] of Object.entries(node.attributes ?? {})) w.message(5, (a) => writeAttribute(a, name, value));
  if (node.domain) w.string(7, node.domain);
}

function writeAttribute(w: Writer, name: string, value: AttributeValue): void {
  w.string(1, name);
  if (typeof value === 'number') {
    w.int(3, value);
    w.int(20, 2);
  } else if (typeof value === 'string') {
    w.bytes(4, new TextEncoder().encode(value));
    w.int(20, 3);
  } else if (Array.isArray(value)) {
    for (const v of value) w.int(8, v);
    w.int(20, 7);
  } else if ('graph' in value) {
    w.message(6, (g) => {
      for (const n of value.graph.nodes) g.message(1, (m) => writeNode(m, n));
      g.string(2, value.graph.name);
      for (const o of value.graph.outputs) g.message(12, (m) => writeValueInfo(m, o));
    });
    w.int(20, 5);
  } else if ('float' in value) {
    w.float(2, value.float);
    w.int(20, 1);
  } else {
    for (const v of value.floats) w.float(7, v);
    w.int(20, 6);
  }
}

function writeValueInfo(w: Writer, v: ValueInfo): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, v.dataType);
      tensor.message(2, (shape) => {
        for (const d of v.shape) shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
      });
    }),
  );
}

export function encodeModel(model: OnnxModel): Uint8Array {
  const w = new Writer();
  w.int(1, 9); // ir_version 9
  w.string(2, 'lora-inference-server');
  w.message(7, (g) => {
    for (const n of model.nodes) g.message(1, (m) => writeNode(m, n));
    g.string(2, model.graphName);
    for (const t of model.inlineInitializers) {
      g.message(5, (m) => {
        for (const d of t.dims) m.int(1, d);
        m.int(2, t.dataType);
        m.string(8, t.name);
        m.bytes(9, t.raw);
      });
    }
    for (const t of model.externalInitializers) {
      g.message(5, (m) => {
        for (const d of t.dims) m.int(1, d);
        m.int(2, t.dataType);
        m.string(8, t.name);
        for (const [key, value] of [
          ['location', t.location],
          ['offset', String(t.offset)],
          ['length', String(t.length)],
        ]) {
          m.message(13, (e) => {
            e.string(1, key);
            e.string(2, value);
          });
        }
        m.int(14, 1); // data_location = EXTERNAL
      });
    }
    for (const i of model.inputs) g.message(11, (m) => writeValueInfo(m, i));
    for (const o of model.outputs) g.message(12, (m) => writeValueInfo(m, o));
  });
  for (const op of model.opsets) {
    w.message(8, (m) => {
      if (op.domain) m.string(1, op.domain);
      m.int(2, op.version);
    });
  }
  for (const [key, value] of Object.entries(model.metadata ?? {})) {
    w.message(14, (m) => {
      m.string(1, key);
      m.string(2, value);
    });
  }
  return w.finish();
}
