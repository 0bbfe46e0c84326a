/**
 * Prints the sha256 (hex) of an API key, the form server.apiKeys[].sha256 and server.adminKeys hold:
 *   npm run key:hash -- <key>          (or pipe the key on stdin: printf %s "$KEY" | npm run -s key:hash)
 * With --new it makes a random key (32 bytes, base64url) and prints the key and its hash.
 * Reading from stdin keeps the key out of the shell history and the process list.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { sha256Hex } from '../src/security/keys.js';

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write('Usage: npm run key:hash -- <key> | npm run key:hash -- --new | printf %s "$KEY" | npm run -s key:hash\n');
  process.exit(0);
}
if (args[0] === '--new') {
  const key = `lis_${randomBytes(32).toString('base64url')}`;
  process.stdout.write(`key:    ${key}\nsha256: ${sha256Hex(key)}\n`);
  process.exit(0);
}
const key = args.length ? args.join(' ') : process.stdin.isTTY ? '' : readFileSync(0, 'utf8').replace(/\r?\n$/, '');
if (!key) {
  process.stderr.write('no key given: npm run key:hash -- <key> (or pipe it on stdin, or --new for a random one)\n');
  process.exit(2);
}
process.stdout.write(`${sha256Hex(key)}\n`);
