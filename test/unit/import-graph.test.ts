/**
 * The shape of src/'s imports: no cycles (type-only imports count too: a cycle of types is still two modules
 * that cannot be understood or moved apart), the engine imports nothing from the HTTP side (routes, security,
 * fallback, app, config, server), and config takes nothing from the engine but the s3:// parser it validates
 * with; the enumerations of its choice settings are its own and equal the engine's option types.
 *
 * A small walk over the TypeScript compiler's own pre-processing and module resolution (typescript is already
 * a devDependency) rather than madge or dpdm: it resolves NodeNext's `./x.js` specifiers to `x.ts` exactly as
 * tsc does, sees `import type` and dynamic `import()`, and adds no dependency tree to the project.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import ts from 'typescript';
import { GENERATION_CONFIG_MODES, MODEL_DTYPES, QUANTIZE_MODES, STATE_RESIDENCIES } from '../../src/config.js';
import type { ModelDtype, StateResidency } from '../../src/engine/model/batch-runner.js';
import type { QuantizeMode } from '../../src/engine/model/quantize.js';
import type { GenerationConfigMode } from '../../src/engine/model/generation-config.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SRC = join(ROOT, 'src');
const rel = (file: string) => relative(ROOT, file).split(sep).join('/');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return /\.(ts|mts|mjs|js)$/.test(name) && !name.endsWith('.d.ts') ? [p] : [];
  });
}

/** file -> the project files it imports (static, type-only, re-exports and dynamic import()), as paths relative to ROOT. */
export function importGraph(files: string[]): Map<string, string[]> {
  const options: ts.CompilerOptions = { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, allowJs: true };
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const deps = new Set<string>();
    for (const { fileName } of importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const resolved = ts.resolveModuleName(fileName, file, options, ts.sys).resolvedModule;
      if (!resolved) throw new Error(`${rel(file)}: cannot resolve ${fileName}`);
      deps.add(rel(resolved.resolvedFileName));
    }
    graph.set(rel(file), [...deps].sort());
  }
  return graph;
}

/** The cycles of a graph: its strongly connected components of more than one module, or one that imports itself (Tarjan). */
export function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || graph.get(v)?.includes(v)) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

const graph = importGraph(sourceFiles(SRC));

t.test('the cycle finder finds cycles', async (t) => {
  const g = (edges: Record<string, string[]>) => new Map(Object.entries(edges));
  t.same(cycles(g({ a: ['b'], b: ['c'], c: [] })), [], 'a chain has none');
  t.same(cycles(g({ a: ['b'], b: ['c'], c: ['a'], d: ['a'] })), [['a', 'b', 'c']], 'a -> b -> c -> a');
  t.same(cycles(g({ a: ['a'] })), [['a']], 'a module importing itself');
  t.same(cycles(g({ a: ['b'], b: ['a'], c: ['d'], d: ['c'] })).length, 2, 'two separate cycles');
  // The walk sees every kind of import: the graph of a file with each.
  t.ok(graph.get('src/app.ts')!.includes('src/routes/openai/index.ts'), 'app.ts -> routes/openai/index.ts');
  t.ok(graph.get('src/security/keys.ts') !== undefined && graph.size > 50, `${graph.size} modules`);
});

t.test('no import cycles in src/', async (t) => {
  t.same(cycles(graph), [], 'no strongly connected component of modules');
});

t.test('the engine imports nothing from the HTTP side', async (t) => {
  const outside = /^src\/(routes\/|security\/|fallback\/|app\.ts$|config\.ts$|server\.ts$|metrics\.ts$|request-log\.ts$)/;
  const bad = [...graph].filter(([f]) => f.startsWith('src/engine/')).flatMap(([f, deps]) => deps.filter((d) => outside.test(d)).map((d) => `${f} -> ${d}`));
  t.same(bad, []);
});

t.test('config takes from the engine only the s3:// parser, and owns the values of its choice settings', async (t) => {
  t.same(
    graph.get('src/config.ts')!.filter((d) => d.startsWith('src/engine/')),
    ['src/engine/lora/adapter-store.ts'],
  );
  // Equal sets, checked by the compiler (npm run typecheck): config's lists and the engine's option types.
  type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
  const same: [
    Same<(typeof STATE_RESIDENCIES)[number], StateResidency>,
    Same<(typeof MODEL_DTYPES)[number], ModelDtype>,
    Same<(typeof QUANTIZE_MODES)[number], QuantizeMode>,
    Same<(typeof GENERATION_CONFIG_MODES)[number], GenerationConfigMode>,
  ] = [true, true, true, true];
  t.same(same, [true, true, true, true]);
  for (const list of [STATE_RESIDENCIES, MODEL_DTYPES, QUANTIZE_MODES, GENERATION_CONFIG_MODES])
    t.equal(new Set(list).size, list.length, `${list.join(', ')}: no duplicates`);
});
