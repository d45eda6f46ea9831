import type { ConversationRepository } from '../../store/repositories/conversations.js';
import { ImportLineError, readMongoExport, type MongoImportOptions } from './mongo-export.js';
import { threadOfExport } from './store-imported.js';

/**
 * `ciphergate import jsonl`: conversations exported with `mongoexport`, one document per line,
 * stored sealed one conversation per transaction. Reading and storing alternate line by line, so
 * memory stays flat however large the export, and everything before a refused line is committed
 * (the import is idempotent, so the operator fixes the line and runs the same command again).
 */

export interface JsonlImportCounts {
  /** Conversations that gained at least one message (or were new and empty). */
  conversations: number;
  /** Messages stored. */
  messages: number;
  /** Conversations whose every message was already stored. */
  skipped: number;
  /** The last line read (blank lines included, as an editor numbers them). */
  lineNumber: number;
}

export interface JsonlImportOptions extends MongoImportOptions {
  /** Called (and awaited) after every `progressEvery` conversations (default 1000). */
  onProgress?: (counts: JsonlImportCounts) => void | Promise<void>;
  progressEvery?: number;
}

/** A line was refused; `counts` says what was imported before it. */
export class JsonlImportStopped extends Error {
  override readonly name = 'JsonlImportStopped';
  constructor(
    readonly lineError: ImportLineError,
    readonly counts: JsonlImportCounts,
  ) {
    super(lineError.message);
  }
}

export async function importJsonl(
  input: AsyncIterable<string | Buffer>,
  target: { tenantId: string; conversations: ConversationRepository },
  options: JsonlImportOptions = {},
): Promise<JsonlImportCounts> {
  const counts: JsonlImportCounts = { conversations: 0, messages: 0, skipped: 0, lineNumber: 0 };
  const every = options.progressEvery ?? 1000;
  const readOptions: MongoImportOptions = options.defaultCountry ? { defaultCountry: options.defaultCountry } : {};
  try {
    for await (const { lineNumber, conversation } of readMongoExport(input, readOptions)) {
      counts.lineNumber = lineNumber;
      const stored = await target.conversations.storeImported(target.tenantId, threadOfExport(conversation));
      const added = stored.messages.filter((message) => message.inserted).length;
      counts.messages += added;
      if (added > 0 || stored.conversationCreated) counts.conversations += 1;
      else counts.skipped += 1;
      const seen = counts.conversations + counts.skipped;
      if (options.onProgress && seen % every === 0) await options.onProgress({ ...counts });
    }
  } catch (error) {
    if (error instanceof ImportLineError) throw new JsonlImportStopped(error, { ...counts, lineNumber: error.lineNumber });
    throw error;
  }
  return counts;
}
