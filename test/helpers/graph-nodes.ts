import type { OnnxNode, SubGraph } from '../../src/engine/model/onnx-proto.js';

/** An If node's branch. */
export const branch = (node: OnnxNode, name: 'then_branch' | 'else_branch'): SubGraph => (node.attributes![name] as { graph: SubGraph }).graph;

/** Every node of a graph, the nodes inside its If branches included. */
export function allNodes(nodes: OnnxNode[]): OnnxNode[] {
  return nodes.flatMap((n) => (n.opType === 'If' ? [n, ...allNodes(branch(n, 'then_branch').nodes), ...allNodes(branch(n, 'else_branch').nodes)] : [n]));
}
