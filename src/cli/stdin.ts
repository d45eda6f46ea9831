import { CliError } from './errors.js';

/** Reads all of stdin, refusing more than `limitBytes` (a tenant file is small; a mistake is not). */
export async function readStdin(stream: NodeJS.ReadableStream, what: string, limitBytes = 1024 * 1024): Promise<string> {
  if ((stream as NodeJS.ReadStream).isTTY) throw new CliError(`${what} is read from stdin; pipe or redirect it (e.g. < ${what})`, 2);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    size += buffer.length;
    if (size > limitBytes) throw new CliError(`${what}: larger than ${limitBytes} bytes`);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
