/** A small helper to write ONNX nodes: unique node and output names, inline int64 constants. */
import { DataType, type AttributeValue, type OnnxModel, type OnnxNode } from './onnx-proto.js';

export class Graph {
  readonly nodes: OnnxNode[] = [];
  readonly inline: OnnxModel['inlineInitializers'] = [];
  private counter = 0;

  node(opType: string, inputs: string[], attributes?: Record<string, AttributeValue>, outputCount = 1, domain?: string): string[] {
    const name = `${opType}_${this.counter++}`;
    const outputs = Array.from({ length: outputCount }, (_, i) => `${name}_out${i}`);
    this.nodes.push({ opType, domain, inputs, outputs, name, attributes });
    return outputs;
  }

  one(opType: string, inputs: string[], attributes?: Record<string, AttributeValue>, domain?: string): string {
    return this.node(opType, inputs, attributes, 1, domain)[0];
  }

  private readonly constants = new Set<string>();

  /** An inline int64 constant; asking again for the same name returns the one already written. */
  int64(name: string, values: number[], dims: number[] = [values.length]): string {
    if (this.constants.has(name)) return name;
    this.constants.add(name);
    const raw = new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer);
    this.inline.push({ name, dataType: DataType.INT64, dims, raw });
    return name;
  }
}
