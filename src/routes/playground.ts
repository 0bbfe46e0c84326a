/**
 * The playground: a browser page (public/playground/) that sends one prompt to the base model and any adapters
 * side by side over the OpenAI streaming routes, and shows the adapters' state. `GET /playground` serves the
 * page, `GET /` redirects there, and `/playground/<file>` serves the page's module scripts and stylesheet.
 *
 * The files are static: @fastify/static serves them (ETag, Last-Modified, HEAD, content types) from a list made
 * once at start-up (`wildcard: false`: nothing added to the folder later is served, and no path outside it can
 * be named). They need no API key (they hold no data; the page sends the key the user types with its own
 * requests, and the server's auth rules apply to those unchanged). Every file carries a Content-Security-Policy
 * that allows only this origin's scripts, styles and fetches: no inline script or style, no outside network.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

export const PLAYGROUND_PATH = '/playground';

/** public/playground beside src/ (or dist/): the same relative place from both. */
export const PLAYGROUND_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'public', 'playground');

export const PLAYGROUND_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const HEADERS: Record<string, string> = {
  'content-security-policy': PLAYGROUND_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // The files change with the server; a reload should see the current ones (ETag revalidation is cheap).
  'cache-control': 'no-cache',
};

export async function playgroundRoutes(app: FastifyInstance): Promise<void> {
  // Before the routes below (and those @fastify/static adds in this context) are registered.
  app.addHook('onRoute', (route) => {
    route.config = { ...route.config, noApiKey: true };
  });
  await app.register(fastifyStatic, {
    root: PLAYGROUND_DIR,
    prefix: `${PLAYGROUND_PATH}/`,
    wildcard: false,
    index: false,
    cacheControl: false,
    dotfiles: 'deny',
    setHeaders: (res) => {
      for (const [name, value] of Object.entries(HEADERS)) res.setHeader(name, value);
    },
  });
  app.get(PLAYGROUND_PATH, (_request, reply) => reply.sendFile('index.html'));
  app.get(`${PLAYGROUND_PATH}/`, (_request, reply) => reply.redirect(PLAYGROUND_PATH));
  app.get('/', (_request, reply) => reply.redirect(PLAYGROUND_PATH));
}
