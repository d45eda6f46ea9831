import type { FastifyInstance } from 'fastify';

export async function docsRoutes(app: FastifyInstance): Promise<void> {
  app.get(
    '/docs',
    {
      config: { access: { public: true, reason: 'the OpenAPI document describes the public surface, no data' } },
      schema: { hide: true },
    },
    async () => app.swagger(),
  );
}
