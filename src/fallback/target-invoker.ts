/**
 * One call to one Bedrock target with the real SDK: InvokeModel / InvokeModelWithResponseStream for
 * the Llama and Titan families, Converse / ConverseStream for the converse family. No retries, no
 * timeouts here; the caller's signal aborts the HTTP request.
 */
import {
  ConverseCommand,
  ConverseStreamCommand,
  InvokeModelCommand,
  InvokeModelWithResponseStreamCommand,
  type BedrockRuntimeClient,
} from '@aws-sdk/client-bedrock-runtime';
import type { BedrockFamily, BedrockTarget } from './bedrock-config.js';
import { converseInput, parseConverseResponse, parseConverseStreamEvent } from './families/converse.js';
import { llama } from './families/llama.js';
import { titan } from './families/titan.js';
import { MalformedResponseError, type BedrockParams, type Completion, type InvokeFamily, type StreamUpdate } from './families/types.js';

const INVOKE_FAMILIES: Record<Exclude<BedrockFamily, 'converse'>, InvokeFamily> = { llama, titan };

export async function completeOnce(client: BedrockRuntimeClient, target: BedrockTarget, params: BedrockParams, signal: AbortSignal): Promise<Completion> {
  if (target.family === 'converse') {
    const output = await client.send(new ConverseCommand(converseInput(target.modelId, params)), { abortSignal: signal });
    return parseConverseResponse(output);
  }
  const family = INVOKE_FAMILIES[target.family];
  const output = await client.send(
    new InvokeModelCommand({
      modelId: target.modelId,
      contentType: 'application/json',
      accept: 'application/json',
      body: JSON.stringify(family.requestBody(params)),
    }),
    { abortSignal: signal },
  );
  return family.parseResponse(parseJson(output.body.transformToString(), 'response body'));
}

/** Resolves once Bedrock has answered (the SDK waits for the first event); then yields updates. */
export async function streamOnce(
  client: BedrockRuntimeClient,
  target: BedrockTarget,
  params: BedrockParams,
  signal: AbortSignal,
): Promise<AsyncIterable<StreamUpdate>> {
  if (target.family === 'converse') {
    const output = await client.send(new ConverseStreamCommand(converseInput(target.modelId, params)), {
      abortSignal: signal,
    });
    const events = output.stream;
    if (!events) throw new MalformedResponseError('ConverseStream answered without a stream');
    return mapStream(events, parseConverseStreamEvent);
  }
  const family = INVOKE_FAMILIES[target.family];
  const output = await client.send(
    new InvokeModelWithResponseStreamCommand({
      modelId: target.modelId,
      contentType: 'application/json',
      accept: 'application/json',
      body: JSON.stringify(family.requestBody(params)),
    }),
    { abortSignal: signal },
  );
  const events = output.body;
  if (!events) throw new MalformedResponseError('InvokeModelWithResponseStream answered without a stream');
  return mapStream(events, (event) => {
    // Exception members are thrown by the SDK's deserializer; unknown members are skipped.
    const bytes = event.chunk?.bytes;
    if (!bytes) return {};
    return family.parseChunk(parseJson(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'), 'stream chunk'));
  });
}

async function* mapStream<E>(events: AsyncIterable<E>, map: (event: E) => StreamUpdate): AsyncIterable<StreamUpdate> {
  for await (const event of events) yield map(event);
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new MalformedResponseError(`${what} is not JSON`);
  }
}
