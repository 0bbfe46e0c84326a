/**
 * A loopback fake of the Bedrock Runtime REST API (HTTP/1.1), for tests that drive the real
 * @aws-sdk/client-bedrock-runtime client at it through `endpoint`.
 *
 * It serves the four routes the fallback uses, checks that requests carry a well-formed SigV4
 * Authorization header, answers with the JSON bodies of each model family and with
 * application/vnd.amazon.eventstream frames on the stream routes. Each test programs what the next
 * requests see (errors, delays, dropped connections, mid-stream exceptions) and reads back the
 * requests it recorded.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventStreamCodec, type MessageHeaders } from '@smithy/eventstream-codec';

export type Operation = 'invoke' | 'invoke-with-response-stream' | 'converse' | 'converse-stream';
export type WireFamily = 'llama' | 'titan' | 'converse';

/** The modeled Bedrock Runtime errors with the HTTP status the service sends for each. */
export const ERROR_STATUS = {
  AccessDeniedException: 403,
  ConflictException: 400,
  InternalServerException: 500,
  ModelErrorException: 424,
  ModelNotReadyException: 429,
  ModelTimeoutException: 408,
  ResourceNotFoundException: 404,
  ServiceQuotaExceededException: 400,
  ServiceUnavailableException: 503,
  ThrottlingException: 429,
  ValidationException: 400,
} as const;
export type BedrockErrorType = keyof typeof ERROR_STATUS;

/** Exception members of the ResponseStream / ConverseStreamOutput unions, as sent in `:exception-type`. */
export type StreamExceptionType =
  | 'internalServerException'
  | 'modelStreamErrorException'
  | 'validationException'
  | 'throttlingException'
  | 'modelTimeoutException'
  | 'serviceUnavailableException';

/** What the fake does with one request. Everything is optional; the default is a quick success. */
export interface FakeBehavior {
  /** Answer with this modeled error instead of a result. */
  error?: { type: BedrockErrorType; message?: string; status?: number };
  /** Wait this long before sending the response headers. */
  delayMs?: number;
  /** Wait this long before each stream frame. */
  chunkDelayMs?: number;
  /** The generated text; split into word-sized "tokens" (" from", " the"). */
  text?: string;
  /** The family's own finish reason, sent as is (e.g. 'CONTENT_FILTERED'); by default derived. */
  rawFinishReason?: string;
  /** Override the reported prompt token count (default: words in the prompt). */
  promptTokens?: number;
  /** Streams: pause this long before content frame number `after` (0-based), to test idle timeouts. */
  stallAfterChunks?: { after: number; ms: number };
  /** Streams: destroy the socket after this many content frames were written. */
  dropAfterChunks?: number;
  /** Streams: end the response cleanly (no final frames) after this many content frames. */
  truncateAfterChunks?: number;
  /** Streams: send an exception frame after this many content frames. */
  exceptionAfterChunks?: { after: number; type: StreamExceptionType; message?: string };
  /** Send a raw response instead (status, headers, body). */
  raw?: { status: number; headers?: Record<string, string>; body: string };
}

export interface RecordedRequest {
  method: string;
  path: string;
  operation: Operation | null;
  /** Decoded from the URL path. */
  modelId: string | null;
  headers: Record<string, string | string[] | undefined>;
  rawBody: string;
  /** Parsed JSON body, or undefined when it is not JSON. */
  body: any;
  /** The parsed SigV4 Authorization header, when well-formed. */
  auth: SigV4Authorization | null;
  /** performance.now() when the request arrived. */
  receivedAt: number;
  /** The client closed the connection before the whole response was written (abort, timeout, early stop). */
  closedByClient: boolean;
}

export interface SigV4Authorization {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

const SIGV4_PATTERN =
  /^AWS4-HMAC-SHA256 Credential=([A-Za-z0-9]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9-]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;
const AMZ_DATE_PATTERN = /^(\d{8})T\d{6}Z$/;

/** Parses a SigV4 Authorization header; returns a reason string when it is not well-formed. */
export function parseSigV4(authorization: string | undefined, amzDate: string | undefined): SigV4Authorization | string {
  if (!authorization) return 'Missing Authentication Token';
  const match = SIGV4_PATTERN.exec(authorization);
  if (!match) return 'Authorization header is not a well-formed AWS4-HMAC-SHA256 signature';
  const [, accessKeyId, date, region, service, signedHeaderList, signature] = match;
  const signedHeaders = signedHeaderList.split(';');
  if (service !== 'bedrock') return `Credential should be scoped to service 'bedrock', not '${service}'`;
  const dateMatch = amzDate ? AMZ_DATE_PATTERN.exec(amzDate) : null;
  if (!dateMatch) return 'Missing or malformed X-Amz-Date header';
  if (dateMatch[1] !== date) return 'Credential date does not match X-Amz-Date';
  for (const required of ['host', 'x-amz-date']) {
    if (!signedHeaders.includes(required)) return `SignedHeaders must include ${required}`;
  }
  return { accessKeyId, date, region, service, signedHeaders, signature };
}

const ROUTE_PATTERN = /^\/model\/([^/]+)\/(invoke|invoke-with-response-stream|converse|converse-stream)$/;

const toUtf8 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
const fromUtf8 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'utf8'));
const codec = new EventStreamCodec(toUtf8, fromUtf8);

const DEFAULT_TEXT = 'Hello from the fake Bedrock.';

/** Splits text into word-sized pieces that keep their leading space: "a b" -> ["a", " b"]. */
export function splitIntoTokens(text: string): string[] {
  return text.match(/\s*\S+/g) ?? [];
}

function countWords(text: unknown): number {
  return typeof text === 'string' ? splitIntoTokens(text).length : 0;
}

export class FakeBedrock {
  readonly requests: RecordedRequest[] = [];
  /** The region requests must be signed for; null accepts any. */
  expectedRegion: string | null = null;
  private readonly server: Server;
  private readonly queue: FakeBehavior[] = [];
  private defaultBehavior: FakeBehavior = {};
  private readonly inFlight = new Set<AbortController>();
  private readonly dropped = new WeakSet<ServerResponse>();

  private constructor() {
    this.server = createServer((req, res) => {
      void this.handle(req, res);
    });
  }

  static async start(): Promise<FakeBedrock> {
    const fake = new FakeBedrock();
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get endpoint(): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  /** The next requests get these behaviors, one each, in order; then the default applies. */
  enqueue(...behaviors: FakeBehavior[]): void {
    this.queue.push(...behaviors);
  }

  setDefault(behavior: FakeBehavior): void {
    this.defaultBehavior = behavior;
  }

  reset(): void {
    this.queue.length = 0;
    this.defaultBehavior = {};
    this.requests.length = 0;
    this.expectedRegion = null;
  }

  async close(): Promise<void> {
    for (const controller of this.inFlight) controller.abort();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const gone = new AbortController();
    let record: RecordedRequest | undefined;
    this.inFlight.add(gone);
    res.on('close', () => {
      if (!res.writableFinished && !this.dropped.has(res) && record) record.closedByClient = true;
      gone.abort();
      this.inFlight.delete(gone);
    });
    try {
      await this.answer(req, res, gone.signal, (r) => (record = r));
    } catch (error) {
      if (gone.signal.aborted) return;
      if (!res.headersSent) {
        sendJsonError(res, 500, 'InternalServerException', `fake bedrock failed: ${String(error)}`);
      } else {
        res.destroy();
      }
    }
  }

  private async answer(req: IncomingMessage, res: ServerResponse, gone: AbortSignal, onRecord: (record: RecordedRequest) => void): Promise<void> {
    const receivedAt = performance.now();
    const rawBody = await readBody(req);
    const path = (req.url ?? '/').split('?')[0];
    const route = ROUTE_PATTERN.exec(path);
    const operation = (route?.[2] as Operation | undefined) ?? null;
    const modelId = route ? decodeURIComponent(route[1]) : null;
    const auth = parseSigV4(header(req, 'authorization'), header(req, 'x-amz-date'));
    let body: any;
    try {
      body = rawBody ? JSON.parse(rawBody) : undefined;
    } catch {
      body = undefined;
    }
    const record: RecordedRequest = {
      method: req.method ?? '',
      path,
      operation,
      modelId,
      headers: { ...req.headers },
      rawBody,
      body,
      auth: typeof auth === 'string' ? null : auth,
      receivedAt,
      closedByClient: false,
    };
    this.requests.push(record);
    onRecord(record);

    if (typeof auth === 'string') {
      sendJsonError(res, 403, 'AccessDeniedException', auth);
      return;
    }
    if (this.expectedRegion && auth.region !== this.expectedRegion) {
      sendJsonError(res, 403, 'AccessDeniedException', `Credential should be scoped to a valid region, not '${auth.region}'`);
      return;
    }
    if (req.method !== 'POST' || !operation || !modelId) {
      res.writeHead(404, { 'content-type': 'application/json', 'x-amzn-errortype': 'UnknownOperationException' });
      res.end(JSON.stringify({ message: `No route for ${req.method} ${path}` }));
      return;
    }

    const behavior = this.queue.shift() ?? this.defaultBehavior;
    if (behavior.delayMs) await sleep(behavior.delayMs, gone);

    if (behavior.raw) {
      res.writeHead(behavior.raw.status, behavior.raw.headers ?? {});
      res.end(behavior.raw.body);
      return;
    }
    if (behavior.error) {
      const { type, message, status } = behavior.error;
      sendJsonError(res, status ?? ERROR_STATUS[type], type, message ?? `${type} from the fake`);
      return;
    }

    const family = detectFamily(operation, body);
    if (!family) {
      sendJsonError(res, 400, 'ValidationException', 'Malformed input request, please reformat your input and try again.');
      return;
    }
    const generation = generate(family, body, behavior);
    if (operation === 'invoke' || operation === 'converse') {
      res.writeHead(200, {
        'content-type': 'application/json',
        'x-amzn-requestid': requestId(),
        'x-amzn-bedrock-input-token-count': String(generation.promptTokens),
        'x-amzn-bedrock-output-token-count': String(generation.tokens.length),
      });
      res.end(JSON.stringify(completeBody(family, generation)));
      return;
    }
    await this.stream(res, family, operation, generation, behavior, gone);
  }

  private async stream(
    res: ServerResponse,
    family: WireFamily,
    operation: Operation,
    generation: Generation,
    behavior: FakeBehavior,
    gone: AbortSignal,
  ): Promise<void> {
    const headers: Record<string, string> = {
      'content-type': 'application/vnd.amazon.eventstream',
      'x-amzn-requestid': requestId(),
    };
    if (operation === 'invoke-with-response-stream') headers['x-amzn-bedrock-content-type'] = 'application/json';
    res.writeHead(200, headers);
    res.flushHeaders();

    const frames = operation === 'converse-stream' ? converseStreamFrames(generation) : chunkFrames(family, generation);
    let contentFramesSent = 0;
    for (const frame of frames) {
      if (frame.content) {
        if (behavior.exceptionAfterChunks && contentFramesSent === behavior.exceptionAfterChunks.after) {
          const { type, message } = behavior.exceptionAfterChunks;
          if (behavior.chunkDelayMs) await sleep(behavior.chunkDelayMs, gone);
          res.end(exceptionFrame(type, message ?? `${type} from the fake`));
          return;
        }
        if (behavior.stallAfterChunks && contentFramesSent === behavior.stallAfterChunks.after) {
          await sleep(behavior.stallAfterChunks.ms, gone);
        }
        if (behavior.dropAfterChunks !== undefined && contentFramesSent === behavior.dropAfterChunks) {
          this.dropped.add(res);
          res.socket?.destroy();
          return;
        }
        if (behavior.truncateAfterChunks !== undefined && contentFramesSent === behavior.truncateAfterChunks) {
          res.end();
          return;
        }
      }
      if (behavior.chunkDelayMs) await sleep(behavior.chunkDelayMs, gone);
      // Wait until the frame is handed to the kernel, so a later socket.destroy() cannot discard it.
      await new Promise<void>((resolve, reject) => res.write(frame.bytes, (error) => (error ? reject(error) : resolve())));
      if (frame.content) contentFramesSent++;
    }
    res.end();
  }
}

interface Generation {
  tokens: string[];
  promptTokens: number;
  finish: 'stop' | 'length';
  rawFinishReason?: string;
}

interface Frame {
  bytes: Uint8Array;
  /** Frames that carry generated text count for dropAfterChunks and friends. */
  content: boolean;
}

function detectFamily(operation: Operation, body: any): WireFamily | null {
  if (!body || typeof body !== 'object') return null;
  if (operation === 'converse' || operation === 'converse-stream') {
    return Array.isArray(body.messages) ? 'converse' : null;
  }
  if (typeof body.prompt === 'string') return 'llama';
  if (typeof body.inputText === 'string') return 'titan';
  return null;
}

function generate(family: WireFamily, body: any, behavior: FakeBehavior): Generation {
  const all = splitIntoTokens(behavior.text ?? DEFAULT_TEXT);
  let limit: number | undefined;
  let promptText: string;
  if (family === 'llama') {
    limit = body.max_gen_len;
    promptText = body.prompt;
  } else if (family === 'titan') {
    limit = body.textGenerationConfig?.maxTokenCount;
    promptText = body.inputText;
  } else {
    limit = body.inferenceConfig?.maxTokens;
    promptText = (body.messages as any[])
      .flatMap((m) => m.content ?? [])
      .map((c: any) => c.text ?? '')
      .join(' ');
  }
  const truncated = typeof limit === 'number' && all.length > limit;
  return {
    tokens: truncated ? all.slice(0, limit) : all,
    promptTokens: behavior.promptTokens ?? countWords(promptText),
    finish: truncated ? 'length' : 'stop',
    rawFinishReason: behavior.rawFinishReason,
  };
}

const FINISH_WORDS: Record<WireFamily, Record<'stop' | 'length', string>> = {
  llama: { stop: 'stop', length: 'length' },
  titan: { stop: 'FINISH', length: 'LENGTH' },
  converse: { stop: 'end_turn', length: 'max_tokens' },
};

function finishWord(family: WireFamily, generation: Generation): string {
  return generation.rawFinishReason ?? FINISH_WORDS[family][generation.finish];
}

function completeBody(family: WireFamily, generation: Generation): unknown {
  const text = generation.tokens.join('');
  const completionTokens = generation.tokens.length;
  if (family === 'llama') {
    return {
      generation: text,
      prompt_token_count: generation.promptTokens,
      generation_token_count: completionTokens,
      stop_reason: finishWord(family, generation),
    };
  }
  if (family === 'titan') {
    return {
      inputTextTokenCount: generation.promptTokens,
      results: [{ tokenCount: completionTokens, outputText: text, completionReason: finishWord(family, generation) }],
    };
  }
  return {
    output: { message: { role: 'assistant', content: [{ text }] } },
    stopReason: finishWord(family, generation),
    usage: {
      inputTokens: generation.promptTokens,
      outputTokens: completionTokens,
      totalTokens: generation.promptTokens + completionTokens,
    },
    metrics: { latencyMs: 12 },
  };
}

function invocationMetrics(generation: Generation): Record<string, number> {
  return {
    inputTokenCount: generation.promptTokens,
    outputTokenCount: generation.tokens.length,
    invocationLatency: 12,
    firstByteLatency: 3,
  };
}

/** InvokeModelWithResponseStream: one `chunk` event per token; its payload is the family's JSON, base64'd. */
function chunkFrames(family: WireFamily, generation: Generation): Frame[] {
  const { tokens } = generation;
  const pieces = tokens.length > 0 ? tokens : [''];
  return pieces.map((piece, i) => {
    const first = i === 0;
    const last = i === pieces.length - 1;
    let chunk: Record<string, unknown>;
    if (family === 'llama') {
      chunk = {
        generation: piece,
        prompt_token_count: first ? generation.promptTokens : null,
        generation_token_count: tokens.length === 0 ? 0 : i + 1,
        stop_reason: last ? finishWord(family, generation) : null,
      };
    } else {
      chunk = {
        outputText: piece,
        index: 0,
        totalOutputTextTokenCount: tokens.length === 0 ? 0 : i + 1,
        completionReason: last ? finishWord(family, generation) : null,
        inputTextTokenCount: first ? generation.promptTokens : null,
      };
    }
    if (last) chunk['amazon-bedrock-invocationMetrics'] = invocationMetrics(generation);
    const payload = { bytes: Buffer.from(JSON.stringify(chunk)).toString('base64') };
    return { bytes: eventFrame('chunk', payload), content: true };
  });
}

/** ConverseStream: messageStart, contentBlockDelta per token, contentBlockStop, messageStop, metadata. */
function converseStreamFrames(generation: Generation): Frame[] {
  const frames: Frame[] = [{ bytes: eventFrame('messageStart', { role: 'assistant' }), content: false }];
  for (const piece of generation.tokens) {
    frames.push({ bytes: eventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: piece } }), content: true });
  }
  frames.push({ bytes: eventFrame('contentBlockStop', { contentBlockIndex: 0 }), content: false });
  frames.push({ bytes: eventFrame('messageStop', { stopReason: finishWord('converse', generation) }), content: false });
  const completionTokens = generation.tokens.length;
  frames.push({
    bytes: eventFrame('metadata', {
      usage: {
        inputTokens: generation.promptTokens,
        outputTokens: completionTokens,
        totalTokens: generation.promptTokens + completionTokens,
      },
      metrics: { latencyMs: 12 },
    }),
    content: false,
  });
  return frames;
}

function eventFrame(eventType: string, payload: unknown): Uint8Array {
  const headers: MessageHeaders = {
    ':event-type': { type: 'string', value: eventType },
    ':content-type': { type: 'string', value: 'application/json' },
    ':message-type': { type: 'string', value: 'event' },
  };
  return codec.encode({ headers, body: fromUtf8(JSON.stringify(payload)) });
}

function exceptionFrame(type: StreamExceptionType, message: string): Uint8Array {
  const headers: MessageHeaders = {
    ':exception-type': { type: 'string', value: type },
    ':content-type': { type: 'string', value: 'application/json' },
    ':message-type': { type: 'string', value: 'exception' },
  };
  const body: Record<string, unknown> = { message };
  if (type === 'modelStreamErrorException') {
    body.originalStatusCode = 500;
    body.originalMessage = message;
  }
  return codec.encode({ headers, body: fromUtf8(JSON.stringify(body)) });
}

/** How Bedrock sends a modeled error: the type in x-amzn-ErrorType, the message in a JSON body. */
function sendJsonError(res: ServerResponse, status: number, type: string, message: string): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/`,
    'x-amzn-requestid': requestId(),
  });
  res.end(JSON.stringify({ message }));
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

let requestCounter = 0;
function requestId(): string {
  requestCounter++;
  return `00000000-0000-4000-8000-${requestCounter.toString().padStart(12, '0')}`;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(new Error('client went away'));
      return;
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Error('client went away'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
