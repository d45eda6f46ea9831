// Which Node.js runs the CLI. An end-of-life runtime is refused before anything loads: Node 20
// gets no security releases since 2026-04-30, and commander 15 and openai 7 need Node 22 or later.
export const MINIMUM_NODE_MAJOR = 24;

/** The one line to print when `version` (process.version) is too old, or undefined when it is fine. */
export function unsupportedNodeMessage(version) {
  const major = Number(String(version).replace(/^v/, '').split('.')[0]);
  if (Number.isInteger(major) && major >= MINIMUM_NODE_MAJOR) return undefined;
  return `ciphergate: Node.js ${MINIMUM_NODE_MAJOR} or later is required (this is ${version}); see README.md`;
}
