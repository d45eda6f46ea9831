import pinoPretty from 'pino-pretty';
import type { DestinationStream } from 'pino';

/**
 * Log lines for a person at a terminal: pino-pretty's coloured one-liners when the stream the
 * log goes to is a TTY, pino's JSON lines everywhere else (a pipe, a file, a container's log
 * collector), so what machines read never changes. The lines are redacted before they reach this
 * stream (src/log/logger.ts), so pretty output holds nothing the JSON would not.
 *
 * pino-pretty is a dependency, not a devDependency: operators run `npx ciphergate serve` in a
 * terminal on installs made with `npm ci --omit=dev` too.
 */
export function humanOrJson(stream: DestinationStream & { isTTY?: boolean; fd?: number }, json: () => DestinationStream): DestinationStream {
  if (stream.isTTY !== true) return json();
  // Synchronous: a terminal is read by a person, and a crash must not lose its last lines.
  return pinoPretty({ destination: stream.fd ?? stream, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' });
}
