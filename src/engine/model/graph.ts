/** A small helper to write ONNX nodes: unique node and output names, inline int64 constants. */
import { DataType, type AttributeValue, type OnnxModel, type OnnxNode, type SubGraph, type ValueInfo } from './onnx-proto.js';

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

  /**
   * The nodes `build` adds, taken out of this graph as a subgraph (an If branch) whose outputs are the values
   * build returns; they may read any value of this graph made before (constants made in build stay in this graph).
   */
  subgraph(outputs: Array<Omit<ValueInfo, 'name'>>, build: () => string[]): SubGraph {
    const from = this.nodes.length;
    // onnxruntime refuses a branch output that is an outer value: such an output gets an Identity.
    const results = build().map((value) => (this.nodes.slice(from).some((n) => n.outputs.includes(value)) ? value : this.one('Identity', [value])));
    const nodes = this.nodes.splice(from);
    return { name: `subgraph_${this.counter++}`, nodes, outputs: results.map((name, i) => ({ name, ...outputs[i] })) };
  }

  /** An If on the bool scalar `condition`: the values `then` or `otherwise` computes (each a subgraph). */
  ifElse(condition: string, outputs: Array<Omit<ValueInfo, 'name'>>, then: () => string[], otherwise: () => string[]): string[] {
    const thenBranch = this.subgraph(outputs, then);
    const elseBranch = this.subgraph(outputs, otherwise);
    return this.node('If', [condition], { then_branch: { graph: thenBranch }, else_branch: { graph: elseBranch } }, outputs.length);
  }

  /** Renames a node's output that nothing reads yet (to make it a graph output without an Identity copy). */
  rename(output: string, name: string): string {
    if (this.nodes.some((n) => n.inputs.includes(output))) throw new Error(`Graph: ${output} is already read; cannot rename it`);
    const producer = this.nodes.find((n) => n.outputs.includes(output));
    if (!producer) throw new Error(`Graph: no node writes ${output}`);
    producer.outputs[producer.outputs.indexOf(output)] = name;
    return name;
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
