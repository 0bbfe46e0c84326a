/**
 * The Bedrock fallback section of the server config: which adapters have a Bedrock target, and how
 * to call it. Credentials never belong here: the AWS SDK's default provider chain supplies them.
 */

export const BEDROCK_FAMILIES = ['llama', 'titan', 'converse'] as const;
export type BedrockFamily = (typeof BEDROCK_FAMILIES)[number];

export interface BedrockTarget {
  /** A provisioned model ARN, an inference profile or a base model id. */
  modelId: string;
  family: BedrockFamily;
  region: string;
  /** Deadline for getting an answer (all attempts), and the longest gap allowed between stream events. */
  timeoutMs: number;
  /** Retries after the first attempt, only for retryable faults and only before anything was streamed. */
  maxRetries: number;
  /** Cap on generated tokens; requests asking for more are lowered to it. */
  maxTokens?: number;
  /** Informational: the adapter is also served locally. */
  localAlso: boolean;
}

export interface CircuitBreakerConfig {
  /** Consecutive failed calls that open the circuit. */
  failureThreshold: number;
  /** How long an open circuit refuses calls before letting one probe through. */
  cooldownMs: number;
}

export interface BedrockConfig {
  /** Adapter name -> Bedrock target. */
  targets: Record<string, BedrockTarget>;
  circuitBreaker: CircuitBreakerConfig;
  /** Overrides the regional endpoint: a VPC interface endpoint, or a loopback fake in tests. */
  endpoint?: string;
}

export const BEDROCK_DEFAULTS = {
  timeoutMs: 60_000,
  maxRetries: 2,
  circuitBreaker: { failureThreshold: 5, cooldownMs: 30_000 },
} as const;

const ADAPTER_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const REGION = /^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d+$/;
const BEDROCK_ARN = /^arn:aws[a-z-]*:bedrock:([a-z0-9-]+):\d{12}:[a-z-]+\/\S+$/;
const CREDENTIAL_KEY = /^(aws_?)?(access_?key(_?id)?|secret(_?access)?_?key|session_?token|credentials?)$/i;
const TARGET_KEYS = ['modelId', 'family', 'region', 'timeoutMs', 'maxRetries', 'maxTokens', 'localAlso'];
const TOP_KEYS = ['targets', 'circuitBreaker', 'endpoint'];
const BREAKER_KEYS = ['failureThreshold', 'cooldownMs'];
const MAX_TIMEOUT_MS = 15 * 60_000;

/** Validates the raw `bedrock` config section and fills defaults; throws an Error naming the bad value. */
export function parseBedrockConfig(raw: unknown): BedrockConfig {
  rejectCredentials(raw, 'bedrock');
  const section = asObject(raw, 'bedrock');
  rejectUnknownKeys(section, TOP_KEYS, 'bedrock');

  const targetsRaw = asObject(section.targets ?? {}, 'bedrock.targets');
  const targets: Record<string, BedrockTarget> = {};
  for (const [adapter, value] of Object.entries(targetsRaw)) {
    if (!ADAPTER_NAME.test(adapter)) {
      throw new Error(`bedrock.targets: "${adapter}" is not a valid adapter name (letters, digits, ".", "_" and "-", at most 64).`);
    }
    targets[adapter] = parseTarget(value, `bedrock.targets.${adapter}`);
  }

  const config: BedrockConfig = {
    targets,
    circuitBreaker: parseCircuitBreaker(section.circuitBreaker, 'bedrock.circuitBreaker'),
  };
  if (section.endpoint !== undefined) config.endpoint = parseEndpoint(section.endpoint, 'bedrock.endpoint');
  return config;
}

function parseTarget(raw: unknown, path: string): BedrockTarget {
  const value = asObject(raw, path);
  rejectUnknownKeys(value, TARGET_KEYS, path);

  const modelId = value.modelId;
  if (typeof modelId !== 'string' || modelId.trim() === '' || /\s/.test(modelId)) {
    throw new Error(`${path}.modelId must be a provisioned model ARN or a model id without spaces.`);
  }
  const family = value.family;
  if (typeof family !== 'string' || !(BEDROCK_FAMILIES as readonly string[]).includes(family)) {
    throw new Error(`${path}.family must be one of ${BEDROCK_FAMILIES.join(', ')}; got ${JSON.stringify(family)}.`);
  }
  const region = value.region;
  if (typeof region !== 'string' || !REGION.test(region)) {
    throw new Error(`${path}.region must be an AWS region such as "us-east-1"; got ${JSON.stringify(region)}.`);
  }
  const arnRegion = BEDROCK_ARN.exec(modelId)?.[1];
  if (arnRegion && arnRegion !== region) {
    throw new Error(`${path}: modelId is an ARN in ${arnRegion} but region is ${region}; they must match.`);
  }

  const target: BedrockTarget = {
    modelId,
    family: family as BedrockFamily,
    region,
    timeoutMs: optionalInteger(value.timeoutMs, `${path}.timeoutMs`, 1, MAX_TIMEOUT_MS) ?? BEDROCK_DEFAULTS.timeoutMs,
    maxRetries: optionalInteger(value.maxRetries, `${path}.maxRetries`, 0, 10) ?? BEDROCK_DEFAULTS.maxRetries,
    localAlso: optionalBoolean(value.localAlso, `${path}.localAlso`) ?? false,
  };
  const maxTokens = optionalInteger(value.maxTokens, `${path}.maxTokens`, 1, 1_000_000);
  if (maxTokens !== undefined) target.maxTokens = maxTokens;
  return target;
}

function parseCircuitBreaker(raw: unknown, path: string): CircuitBreakerConfig {
  if (raw === undefined) return { ...BEDROCK_DEFAULTS.circuitBreaker };
  const value = asObject(raw, path);
  rejectUnknownKeys(value, BREAKER_KEYS, path);
  return {
    failureThreshold: optionalInteger(value.failureThreshold, `${path}.failureThreshold`, 1, 1000) ?? BEDROCK_DEFAULTS.circuitBreaker.failureThreshold,
    cooldownMs: optionalInteger(value.cooldownMs, `${path}.cooldownMs`, 1, 3_600_000) ?? BEDROCK_DEFAULTS.circuitBreaker.cooldownMs,
  };
}

function parseEndpoint(raw: unknown, path: string): string {
  if (typeof raw !== 'string') throw new Error(`${path} must be a URL string.`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`${path} must be an absolute http(s) URL; got ${JSON.stringify(raw)}.`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`${path} must use http or https; got ${url.protocol}.`);
  }
  if (url.username || url.password) {
    throw new Error(`${path} must not embed credentials; the AWS default credential provider chain supplies them.`);
  }
  return raw;
}

/** Credentials in a config file leak through backups, images and logs; refuse them anywhere in the section. */
function rejectCredentials(value: unknown, path: string): void {
  if (Array.isArray(value)) {
    value.forEach((item, i) => rejectCredentials(item, `${path}[${i}]`));
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const [key, child] of Object.entries(value)) {
    if (CREDENTIAL_KEY.test(key)) {
      throw new Error(
        `${path}.${key}: AWS credentials must not be in the config. Remove it; the server uses the AWS SDK's ` +
          'default credential provider chain (environment, shared config/SSO profile, web identity, ECS/EC2 instance role).',
      );
    }
    rejectCredentials(child, `${path}.${key}`);
  }
}

function asObject(value: unknown, path: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${path} must be an object.`);
  }
  return value as Record<string, unknown>;
}

function rejectUnknownKeys(value: Record<string, unknown>, allowed: string[], path: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      throw new Error(`${path}: unknown key "${key}" (allowed: ${allowed.join(', ')}).`);
    }
  }
}

function optionalInteger(value: unknown, path: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${path} must be an integer from ${min} to ${max}; got ${JSON.stringify(value)}.`);
  }
  return value;
}

function optionalBoolean(value: unknown, path: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw new Error(`${path} must be true or false; got ${JSON.stringify(value)}.`);
  return value;
}
