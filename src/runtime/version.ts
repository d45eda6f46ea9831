import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package's version, from package.json at the package root (two levels above both
 * src/runtime and dist/runtime), read once.
 */
export const CIPHERGATE_VERSION: string = (() => {
  const path = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json');
  const { version } = JSON.parse(readFileSync(path, 'utf8')) as { version: string };
  return version;
})();
