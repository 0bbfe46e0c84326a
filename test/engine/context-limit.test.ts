/** A request over the context names the limit that applies and the setting that raises it. */
import t from 'tap';
import { loadFixtureEngine } from '../helpers/engine.js';
import { checkRequest } from '../../src/engine/request-check.js';
import { EngineError } from '../../src/engine/errors.js';

const request = { adapter: null, maxTokens: 10, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: false, logprobs: false };
const adapters = { check: () => undefined };

t.test('below the model: names --max-sequence-length and what the model allows', async (t) => {
  const engine = await loadFixtureEngine({ maxSequenceLength: 64 }); // llama-tiny allows 256
  t.teardown(() => engine.close());
  const error = await engine.generate({ ...request, promptTokenIds: Array(60).fill(5) }).then(
    () => null,
    (e: EngineError) => e,
  );
  t.equal(error?.code, 'context_length_exceeded');
  t.match(
    error?.message,
    /The prompt has 60 tokens and max_tokens is 10; together they must not exceed 64 tokens, the context this server is configured for \(--max-sequence-length \/ MAX_SEQUENCE_LENGTH; the model itself allows 256\)/,
  );
});

t.test("at the model's own limit: names max_position_embeddings", async (t) => {
  const engine = await loadFixtureEngine({ maxSequenceLength: 4096 }); // capped at the model's 256
  t.teardown(() => engine.close());
  const error = await engine.generate({ ...request, promptTokenIds: Array(250).fill(5) }).then(
    () => null,
    (e: EngineError) => e,
  );
  t.match(error?.message, /must not exceed 256 tokens, the model's context \(max_position_embeddings in its config\.json\)/);
});

t.test('the HTTP thread runs the same check on its mirror', async (t) => {
  t.throws(
    () => checkRequest(request, Array(60).fill(5), { spec: { vocabSize: 100, maxPositions: 131072 }, maxSequenceLength: 64, adapters }),
    /--max-sequence-length/,
  );
});
