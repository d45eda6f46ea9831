// The console's Eta views and its stylesheet are read at run time beside the compiled modules
// (dist/console/), which tsc does not copy.
import { cpSync } from 'node:fs';

for (const folder of ['views', 'assets']) {
  cpSync(`src/console/${folder}`, `dist/console/${folder}`, { recursive: true });
}
