// The layering of src/ (docs/architecture.md), checked by `npm run lint:layers` before the tests.
// Dependencies point one way, ground up: domain → config, log → seal → store → providers →
// relay, identity, keys (the use cases) → http, cli (front ends) → runtime (the composition root).
// A folder's rule lists the folders it may NOT import; runtime may import every layer but cli,
// because wiring them together is its one job. test/ops/architecture-doc.test.ts holds docs/architecture.md's
// rule table to this list, so the two cannot drift apart.

/** Every top folder of src/ but the ones given. */
function allBut(...allowed) {
  return FOLDERS.filter((folder) => !allowed.includes(folder));
}

const FOLDERS = ['domain', 'config', 'log', 'metrics', 'seal', 'store', 'audit', 'providers', 'relay', 'identity', 'keys', 'http', 'console', 'cli', 'runtime'];

/** Use cases and front ends that only the composition root (and the CLI's entry) may reach. */
const ABOVE_STORE = ['audit', 'relay', 'identity', 'keys', 'http', 'console', 'cli', 'runtime'];

const layers = [
  // Pure vocabulary (normalisation, ids, keywords, job kinds): testable without anything else,
  // and usable by every layer because it depends on none.
  { folder: 'domain', mayNotImport: allBut('domain') },
  // Settings are read once at start and handed down; reading them must not open anything.
  { folder: 'config', mayNotImport: allBut('config', 'domain') },
  // The logger is taken by everything, so it may take nothing (a cycle waiting to happen).
  { folder: 'log', mayNotImport: allBut('log', 'domain') },
  // Metrics are registries and a listener; they observe, they do not reach into data or keys.
  { folder: 'metrics', mayNotImport: allBut('metrics', 'domain', 'config', 'log') },
  // Crypto must not depend on where keys are kept: the keyring persists through an interface
  // (seal/keyring-store.ts) that the store implements, never the other way round.
  { folder: 'seal', mayNotImport: allBut('seal', 'domain', 'config', 'log', 'metrics') },
  // The store owns every table and applies sealing; it knows nothing of who calls it, so any
  // use case or front end can be rewritten without touching SQL.
  { folder: 'store', mayNotImport: [...ABOVE_STORE, 'providers', 'metrics'] },
  // The audit trail is a use case over the store's chain; the use cases and front ends call it.
  // It opens sealed fields (seal) only to show a person the emails behind the ids it names.
  { folder: 'audit', mayNotImport: allBut('audit', 'domain', 'config', 'log', 'seal', 'store') },
  // Providers are SDK clients only: no data, no keys, so a provider quirk never touches storage.
  { folder: 'providers', mayNotImport: allBut('providers', 'domain', 'config', 'log') },
  // The message pipeline; it takes identity's decisions as data (a Caller), never its modules,
  // so relay and identity stay two areas that can change apart.
  { folder: 'relay', mayNotImport: ['identity', 'keys', 'http', 'console', 'cli', 'runtime'] },
  // People and machines; an SMS code goes out through a port (SmsCodeSender) that runtime wires.
  { folder: 'identity', mayNotImport: ['relay', 'keys', 'http', 'console', 'cli', 'runtime', 'providers'] },
  // Key maintenance works on sealed rows and the keyring; it needs no other use case.
  { folder: 'keys', mayNotImport: ['relay', 'identity', 'http', 'console', 'cli', 'runtime', 'providers'] },
  // HTTP translates requests to use cases and their errors to problem+json; a route that reached
  // the store, the keys or a provider would be a use case hidden where a second front end
  // (the CLI, the console) cannot call it.
  { folder: 'http', mayNotImport: ['store', 'seal', 'providers', 'keys', 'cli', 'runtime'] },
  // The staff console is a front end on the HTTP plumbing (guard, caller, csrf), its pages listed
  // in the one route table (http/routes/index.ts); like http it calls use cases only.
  { folder: 'console', mayNotImport: ['store', 'seal', 'providers', 'keys', 'cli', 'runtime'] },
  // The CLI is the second front end: argument parsing, calling use cases (opened by runtime),
  // formatting output. Same reason as http.
  { folder: 'cli', mayNotImport: ['store', 'seal', 'providers', 'http', 'console', 'metrics'] },
  // The composition root: it may wire every layer, but the CLI (the process entry) calls it, so
  // an import back into cli would be a cycle between the two folders.
  { folder: 'runtime', mayNotImport: ['cli'] },
];

function folders(list) {
  return `^src/(${list.join('|')})/`;
}

module.exports = {
  forbidden: [
    ...layers.map(({ folder, mayNotImport }) => ({
      name: `layer-${folder}`,
      comment: `src/${folder} may not import ${mayNotImport.join(', ')} (docs/architecture.md, "Layers")`,
      severity: 'error',
      from: { path: `^src/${folder}/` },
      to: { path: folders(mayNotImport) },
    })),
    {
      // A cycle between files makes load order matter and two modules that can only change
      // together; type-only imports count, since they couple the files all the same.
      name: 'no-circular',
      comment: 'this import closes a cycle between files; move the shared part into its own module',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      // An import that resolves to nothing fails at run time only on the path that loads it.
      name: 'not-to-unresolvable',
      comment: 'this import resolves to no file and no installed package',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports are dependencies too (see no-circular).
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // NodeNext: source imports name `.js`, the file on disk is `.ts`.
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.d.ts', '.json'],
    },
  },
};
