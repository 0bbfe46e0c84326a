/**
 * API keys and admin keys. Keys are never stored in clear: the configuration holds the sha256 (hex) of
 * each key, and a presented bearer token is hashed and compared with crypto.timingSafeEqual against every
 * stored hash (no early exit), so neither the comparison nor the lookup leaks how much of a key matched.
 *
 * Keys come from `server.apiKeys` / `server.adminKeys` in the config file, or from a JSON file named by
 * `--api-keys-file` / `API_KEYS_FILE` (`{"apiKeys": [...], "adminKeys": [...]}`; each field it holds
 * replaces the one from the config file), so keys can live in a mounted secret.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';

/** One API key as configured (config file or API_KEYS_FILE). */
export interface ApiKeyConfig {
  /** sha256 hex of the key; keys are never stored in clear. */
  sha256: string;
  name: string;
  adapters: string[] | '*';
  rateLimitPerMinute?: number;
  maxConcurrent?: number;
}

/** The part of the configuration (its `server` section) that keys come from and are checked against. */
interface KeySettings {
  server: { host: string; apiKeys: ApiKeyConfig[]; adminKeys: string[]; apiKeysFile: string; allowUnauthenticated: boolean };
}

/** The allow-list entry that stands for the bare base model. */
export const BASE_MODEL = 'base';

const SHA256_HEX = /^[0-9a-f]{64}$/;
/** Same as ADAPTER_NAME in src/engine/lora/adapter-manager.ts (not imported: config loading stays free of the engine). */
const ADAPTER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$/;
const MAX_KEYS_FILE_BYTES = 1 << 20;

export function sha256Hex(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** Who made a request, once its key matched. */
export interface Principal {
  /** The key's name from the config (never the key). */
  name: string;
  admin: boolean;
  /** Adapter names this key may use ("base" = the base model), or '*' for all. */
  adapters: ReadonlySet<string> | '*';
  rateLimitPerMinute?: number;
  maxConcurrent?: number;
}

interface StoredKey {
  hash: Buffer;
  principal: Principal;
}

export class KeyStore {
  private readonly keys: StoredKey[];

  constructor(apiKeys: readonly ApiKeyConfig[], adminKeys: readonly string[]) {
    this.keys = [
      ...apiKeys.map((k) => ({
        hash: Buffer.from(k.sha256.toLowerCase(), 'hex'),
        principal: {
          name: k.name,
          admin: false,
          adapters: k.adapters === '*' ? ('*' as const) : new Set(k.adapters),
          ...(k.rateLimitPerMinute !== undefined ? { rateLimitPerMinute: k.rateLimitPerMinute } : {}),
          ...(k.maxConcurrent !== undefined ? { maxConcurrent: k.maxConcurrent } : {}),
        },
      })),
      ...adminKeys.map((h, i) => ({ hash: Buffer.from(h.toLowerCase(), 'hex'), principal: { name: `admin-${i + 1}`, admin: true, adapters: '*' as const } })),
    ];
  }

  /** True when any key is configured: then every route but health, readiness and metrics needs one. */
  get enabled(): boolean {
    return this.keys.length > 0;
  }

  /**
   * The principal whose stored hash equals sha256(presented), or null. Every stored hash is compared
   * (constant time per comparison, no early exit), whatever matched.
   */
  lookup(presented: string): Principal | null {
    const digest = createHash('sha256').update(presented, 'utf8').digest();
    let found: Principal | null = null;
    for (const k of this.keys) {
      // Both sides are 32 bytes, as timingSafeEqual requires.
      if (timingSafeEqual(digest, k.hash) && found === null) found = k.principal;
    }
    return found;
  }
}

/** Reads `server.apiKeysFile` (when set) into the config; problems are added to `problems`. */
export function applyKeysFile(config: KeySettings, problems: string[]): void {
  const file = config.server.apiKeysFile;
  if (!file) return;
  if (!existsSync(file)) {
    problems.push(`server.apiKeysFile ${file} does not exist`);
    return;
  }
  const size = statSync(file).size;
  if (size > MAX_KEYS_FILE_BYTES) {
    problems.push(`server.apiKeysFile ${file} is ${size} bytes; the limit is ${MAX_KEYS_FILE_BYTES}`);
    return;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    problems.push(`server.apiKeysFile ${file} is not valid JSON: ${(e as Error).message}`);
    return;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    problems.push(`server.apiKeysFile ${file} must hold a JSON object {"apiKeys": [...], "adminKeys": [...]}`);
    return;
  }
  const { apiKeys, adminKeys, ...rest } = parsed as Record<string, unknown>;
  for (const key of Object.keys(rest))
    problems.push(`server.apiKeysFile ${file}: unknown field ${JSON.stringify(key.slice(0, 40))} (known: apiKeys, adminKeys)`);
  if (apiKeys !== undefined) config.server.apiKeys = apiKeys as ApiKeyConfig[];
  if (adminKeys !== undefined) config.server.adminKeys = adminKeys as string[];
}

const isPositiveInt = (v: unknown, max: number) => Number.isSafeInteger(v) && (v as number) >= 1 && (v as number) <= max;

/** Validates server.apiKeys and server.adminKeys in place (hashes lower-cased); returns the problems. */
export function checkKeyConfig(config: KeySettings): string[] {
  const problems: string[] = [];
  const { apiKeys, adminKeys } = config.server as { apiKeys: unknown; adminKeys: unknown };
  if (!Array.isArray(apiKeys)) problems.push('server.apiKeys must be a list of {name, sha256, adapters, rateLimitPerMinute?, maxConcurrent?}');
  else {
    const names = new Set<string>();
    apiKeys.forEach((raw: unknown, i) => {
      const at = `server.apiKeys[${i}]`;
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
        problems.push(`${at} must be an object {name, sha256, adapters}`);
        return;
      }
      const k = raw as Record<string, unknown>;
      for (const field of Object.keys(k)) {
        if (!['name', 'sha256', 'adapters', 'rateLimitPerMinute', 'maxConcurrent'].includes(field))
          problems.push(`${at}: unknown field ${JSON.stringify(field.slice(0, 40))}`);
      }
      if (typeof k.name !== 'string' || !KEY_NAME.test(k.name)) problems.push(`${at}.name must be 1-64 letters, digits, ".", "_", "-", "@" or ":"`);
      else if (names.has(k.name)) problems.push(`${at}.name ${k.name} is used twice`);
      else names.add(k.name);
      if (typeof k.sha256 !== 'string' || !SHA256_HEX.test(k.sha256.toLowerCase())) {
        problems.push(`${at}.sha256 must be the 64 hex digits of the key's sha256 (npm run key:hash -- <key>), not the key itself`);
      } else k.sha256 = k.sha256.toLowerCase();
      if (k.adapters !== '*') {
        if (!Array.isArray(k.adapters) || !k.adapters.every((a) => typeof a === 'string' && (a === BASE_MODEL || ADAPTER_NAME.test(a)))) {
          problems.push(`${at}.adapters must be "*" or a list of adapter names ("${BASE_MODEL}" = the base model)`);
        }
      }
      if (k.rateLimitPerMinute !== undefined && !isPositiveInt(k.rateLimitPerMinute, 1_000_000))
        problems.push(`${at}.rateLimitPerMinute must be an integer from 1 to 1000000`);
      if (k.maxConcurrent !== undefined && !isPositiveInt(k.maxConcurrent, 100_000)) problems.push(`${at}.maxConcurrent must be an integer from 1 to 100000`);
    });
  }
  if (!Array.isArray(adminKeys)) problems.push('server.adminKeys must be a list of sha256 hex strings');
  else {
    adminKeys.forEach((h: unknown, i) => {
      if (typeof h !== 'string' || !SHA256_HEX.test(h.toLowerCase()))
        problems.push(`server.adminKeys[${i}] must be the 64 hex digits of the key's sha256 (npm run key:hash -- <key>), not the key itself`);
      else adminKeys[i] = h.toLowerCase();
    });
  }
  return problems;
}

/** Loopback addresses: with no keys configured the server listens on these only, unless told otherwise. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || h === '::ffff:127.0.0.1';
}

/**
 * Refuses to expose an unauthenticated server beyond loopback. Returns the problem, or null when the
 * configuration is safe (keys configured, a loopback host, or allowUnauthenticated set explicitly).
 */
export function exposureProblem(config: KeySettings): string | null {
  const { host, apiKeys, adminKeys, allowUnauthenticated } = config.server;
  if (isLoopbackHost(host) || apiKeys.length + adminKeys.length > 0 || allowUnauthenticated) return null;
  return (
    `server.host is ${host}, which is not loopback, and no API keys are configured: anyone who can reach the port could ` +
    'use every adapter and the admin API. Configure keys (server.apiKeys / server.adminKeys, or API_KEYS_FILE; see docs/security.md), ' +
    'listen on 127.0.0.1, or start with --allow-unauthenticated (ALLOW_UNAUTHENTICATED=true) if something in front of the server authenticates'
  );
}
