/**
 * The environment for a Node child process a test starts (the server, a CLI): the test's own, without tap's
 * per-process instrumentation. tap puts `--import=<@tapjs/processinfo>/import.mjs` in NODE_OPTIONS so that every
 * child process records the files it loads, for coverage reports, which this project does not make
 * (disable-coverage); in a child that loader only costs time (a server start took ~13% more CPU with it,
 * docs/testing.md). The child then runs as a user runs it.
 */
export function childEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out = { ...env };
  const options = (out.NODE_OPTIONS ?? '').replace(/"[^"]*@tapjs\/processinfo[^"]*"|\S*@tapjs\/processinfo\S*/g, '').trim();
  if (options) out.NODE_OPTIONS = options;
  else delete out.NODE_OPTIONS;
  return out;
}
