// The app of bench/session-check.bench.ts in a process of its own, on the embedded database:
// both probe routes, one signed-in user. Writes that user's access token to TOKEN_FILE before
// listening on PORT, so the token is there once /healthz answers.
import { writeFileSync } from 'node:fs';
import { createSignedInUser, openIdentityBench, sessionCheckRoutes } from '../lib/identity.js';

const bench = await openIdentityBench({
  backend: 'pglite',
  // The API limit stays on (both routes pay for it) but far above what one token sends here.
  env: { CIPHERGATE_API_RATE_LIMIT_PER_MINUTE: '1000000' },
  ...(process.env.LOG_LEVEL ? { logLevel: process.env.LOG_LEVEL } : {}),
  routes: [sessionCheckRoutes],
});
const user = await createSignedInUser(bench);
writeFileSync(process.env.TOKEN_FILE!, user.accessToken);
await bench.app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });
process.on('SIGTERM', () => void bench.close().then(() => process.exit(0)));
