/** Adapter listing and admin: list, register from a path under the adapters root, remove, pin, unpin, reload. */
import type { FastifyInstance } from 'fastify';
import { requireEngine } from './engine-state.js';
import { AppError } from '../errors.js';
import type { AdapterInfo } from '../engine/lora/adapter-manager.js';

const view = (a: AdapterInfo) => ({
  name: a.name,
  status: a.status,
  rank: a.rank,
  targets: a.targets,
  bytes: a.bytes,
  hits: a.hits,
  last_used: a.lastUsed,
  pinned: a.pinned,
  in_use: a.inUse,
  origin: a.origin,
  version: a.version,
  // `reason` is what the README documents; `error` (the same text) stays for clients written against earlier versions.
  ...(a.error ? { reason: a.error, error: a.error } : {}),
});

export async function adapterRoutes(app: FastifyInstance): Promise<void> {
  app.get('/v1/adapters', async () => {
    const engine = requireEngine(app);
    return { object: 'list', data: engine.adapters.list().map(view) };
  });

  app.post<{ Body: { name: string; path: string } }>(
    '/v1/adapters',
    {
      schema: {
        body: {
          type: 'object',
          required: ['name', 'path'],
          additionalProperties: false,
          properties: { name: { type: 'string', minLength: 1, maxLength: 64 }, path: { type: 'string', minLength: 1, maxLength: 4096 } },
        },
      },
    },
    async (request, reply) => {
      const engine = requireEngine(app);
      const info = await engine.adapters.register(request.body.name, request.body.path);
      const validated = await engine.adapters.validate(info.name);
      if (validated.status === 'errored') {
        // Refused: not registered (the same name can be registered again once the files are fixed).
        await engine.adapters.remove(info.name);
        throw new AppError('adapter_errored', `Adapter ${info.name} was not registered: ${validated.error ?? 'it failed validation'}.`);
      }
      return reply.status(201).send(view(validated));
    },
  );

  app.delete<{ Params: { name: string } }>('/v1/adapters/:name', async (request, reply) => {
    await requireEngine(app).adapters.remove(request.params.name);
    return reply.status(204).send();
  });

  // Re-reads the adapter's files (its newest version in the store) and swaps the new weights in atomically:
  // requests in flight finish on the old weights, later ones get the new ones, the old ones are freed.
  app.post<{ Params: { name: string } }>('/v1/adapters/:name/reload', async (request) => {
    const { info, previousVersion } = await requireEngine(app).adapters.reload(request.params.name);
    return { ...view(info), previous_version: previousVersion };
  });

  for (const action of ['pin', 'unpin'] as const) {
    app.post<{ Params: { name: string } }>(`/v1/adapters/:name/${action}`, async (request) =>
      view(await requireEngine(app).adapters.pin(request.params.name, action === 'pin')),
    );
  }
}
