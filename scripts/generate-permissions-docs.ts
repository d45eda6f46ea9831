import { writeFileSync } from 'node:fs';
import { fullRouteCatalogue, permissionsReference } from '../src/http/permissions-reference.js';

writeFileSync(new URL('../docs/permissions.md', import.meta.url), permissionsReference(await fullRouteCatalogue()));
