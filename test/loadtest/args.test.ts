import t from 'tap';
import { normalizeUrl, parseAdapterMix, parseArgs, parseDuration, parseRange, UsageError } from '../../tools/loadtest/args.js';

const NOW = new Date('2025-01-02T03:04:05.678Z');

t.test('defaults', async (t) => {
  const o = parseArgs([], NOW);
  t.match(o, {
    url: 'http://127.0.0.1:8080',
    adapters: [{ label: 'base', adapter: null, weight: 1 }],
    concurrency: 4,
    durationS: 30,
    maxRequests: null,
    stream: false,
    promptTokens: { min: 32, max: 128 },
    maxTokens: 64,
    temperature: null,
    ignoreEos: false,
    seed: 1,
    outDir: 'loadtest-results/2025-01-02T03-04-05Z',
    honorRetryAfter: true,
    progress: true,
    help: false,
  });
});

t.test('all options, both --flag value and --flag=value', async (t) => {
  const o = parseArgs(
    [
      '--url',
      'http://localhost:9000/',
      '--adapters=support:2,sales:1,base',
      '--concurrency',
      '16',
      '--duration=2m',
      '--requests',
      '500',
      '--stream',
      '--prompt-tokens',
      '100-200',
      '--max-tokens=32',
      '--temperature',
      '0.7',
      '--ignore-eos',
      '--seed',
      '42',
      '--out',
      'results/x',
      '--timeout',
      '30',
      '--wait-ready',
      '60',
      '--ignore-retry-after',
      '--quiet',
      '--route',
      'auto',
    ],
    NOW,
  );
  t.match(o, {
    url: 'http://localhost:9000',
    adapters: [
      { label: 'support', adapter: 'support', weight: 2 },
      { label: 'sales', adapter: 'sales', weight: 1 },
      { label: 'base', adapter: null, weight: 1 },
    ],
    concurrency: 16,
    durationS: 120,
    maxRequests: 500,
    stream: true,
    promptTokens: { min: 100, max: 200 },
    maxTokens: 32,
    temperature: 0.7,
    ignoreEos: true,
    seed: 42,
    outDir: 'results/x',
    timeoutS: 30,
    waitReadyS: 60,
    honorRetryAfter: false,
    progress: false,
    route: 'auto',
  });
  t.equal(parseArgs([]).route, null);
  t.equal(parseArgs(['--no-out']).outDir, null);
  t.equal(parseArgs(['-h']).help, true);
  t.equal(parseArgs(['--help']).help, true);
});

t.test('adapter mix', async (t) => {
  t.same(parseAdapterMix('a, b:0.5 ,c:3'), [
    { label: 'a', adapter: 'a', weight: 1 },
    { label: 'b', adapter: 'b', weight: 0.5 },
    { label: 'c', adapter: 'c', weight: 3 },
  ]);
  t.same(parseAdapterMix('base'), [{ label: 'base', adapter: null, weight: 1 }]);
  t.throws(() => parseAdapterMix(''), UsageError);
  t.throws(() => parseAdapterMix('a:0'), /positive/);
  t.throws(() => parseAdapterMix('a:-1'), /positive/);
  t.throws(() => parseAdapterMix('a:x'), /positive/);
  t.throws(() => parseAdapterMix('a:'), /positive/);
  t.throws(() => parseAdapterMix('a,a:2'), /twice/);
  t.throws(() => parseAdapterMix('bad name'), /not a valid adapter name/);
  t.throws(() => parseAdapterMix('x/y'), /not a valid adapter name/);
});

t.test('ranges, durations, URLs', async (t) => {
  t.same(parseRange('64', '--prompt-tokens'), { min: 64, max: 64 });
  t.same(parseRange('10-20', '--prompt-tokens'), { min: 10, max: 20 });
  t.same(parseRange(' 10 - 20 ', '--prompt-tokens'), { min: 10, max: 20 });
  t.throws(() => parseRange('20-10', '--prompt-tokens'), /below MIN/);
  t.throws(() => parseRange('0', '--prompt-tokens'), /at least 1/);
  t.throws(() => parseRange('a-b', '--prompt-tokens'), /MIN-MAX/);
  t.equal(parseDuration('45', '--duration'), 45);
  t.equal(parseDuration('90s', '--duration'), 90);
  t.equal(parseDuration('1.5m', '--duration'), 90);
  t.equal(parseDuration('1h', '--duration'), 3600);
  t.equal(parseDuration('500ms', '--duration'), 0.5);
  t.throws(() => parseDuration('soon', '--duration'), UsageError);
  t.equal(normalizeUrl('http://h:1'), 'http://h:1');
  t.equal(normalizeUrl('http://h:1/'), 'http://h:1');
  t.equal(normalizeUrl('http://h:1/v1/generate'), 'http://h:1', 'the endpoint URL works too');
  t.equal(normalizeUrl('https://h/prefix/'), 'https://h/prefix');
  t.throws(() => normalizeUrl('h:1'), /http/);
  t.throws(() => normalizeUrl('nope'), /not a URL/);
  t.throws(() => normalizeUrl('http://h/?adapter=x'), /without \?query/);
});

t.test('bad command lines are UsageErrors with a message naming the flag', async (t) => {
  const bad: [string[], RegExp][] = [
    [['--concurrency', '0'], /--concurrency: must be at least 1/],
    [['--concurrency', '2.5'], /--concurrency: expected a whole number/],
    [['--concurrency'], /--concurrency needs a value/],
    [['--duration', '0'], /--duration must be more than 0/],
    [['--max-tokens', 'many'], /--max-tokens/],
    [['--temperature', '-1'], /--temperature: must not be negative/],
    [['--frobnicate'], /unknown option --frobnicate/],
    [['--stream=yes'], /--stream takes no value/],
    [['positional'], /unexpected argument/],
    [['--out', 'x', '--no-out'], /exclude each other/],
    [['--out', ''], /--out needs a directory/],
    [['--route', 'cloud'], /--route: expected auto, local or bedrock/],
  ];
  for (const [argv, re] of bad) t.throws(() => parseArgs(argv), re, argv.join(' '));
  t.throws(() => parseArgs(['--frobnicate']), UsageError);
});
