/**
 * Progress of the long-running maintenance jobs (encrypt-existing, re-encryption). On a
 * terminal it redraws one bar in place; anywhere else (a log file, CI, `kubectl logs`) it
 * prints a plain line now and then, because carriage-return redraws turn a log into noise.
 */

export interface Progress {
  /** SQL table name. */
  table: string;
  /** SQL column name. */
  column: string;
  /** Values processed so far in this run. */
  done: number;
  /** Values to process, as counted when the table was started (raised if more turn up). */
  total: number;
}

export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressReporterOptions {
  /** Prefix of every line, e.g. `encrypt-existing`. */
  label: string;
  stream?: ProgressStream;
  /** Off a terminal: at most one line per column this often (default 10 s)... */
  intervalMs?: number;
  /** ...or after this many updates of a column, whichever comes first (default: never by count). */
  everyUpdates?: number;
  /** Forces terminal or line mode; by default taken from `stream.isTTY`. */
  tty?: boolean;
  now?: () => number;
}

export interface ProgressReporter {
  /** Pass as `onProgress`. */
  update(progress: Progress): void;
  /** Ends a bar in progress with a newline (terminal), or prints the last figures (lines). */
  finish(): void;
}

export function formatProgressLine(label: string, progress: Progress): string {
  return `${label}: ${progress.table}.${progress.column} ${progress.done}/${progress.total} (${percent(progress)}%)`;
}

export function createProgressReporter(options: ProgressReporterOptions): ProgressReporter {
  const stream = options.stream ?? process.stderr;
  const tty = options.tty ?? stream.isTTY === true;
  const intervalMs = options.intervalMs ?? 10_000;
  const now = options.now ?? Date.now;
  // Per column: when it was last printed, how many updates since, and the newest figures.
  const columns = new Map<string, { lastPrinted: number; updatesSincePrint: number; latest: Progress; printedLatest: boolean; printedComplete: boolean }>();
  let barOpen = false;
  let barKey: string | undefined;

  const printLine = (progress: Progress) => {
    stream.write(`${formatProgressLine(options.label, progress)}\n`);
  };

  const drawBar = (progress: Progress) => {
    const text = formatProgressLine(options.label, progress);
    const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - text.length - 4));
    const filled = Math.round((width * percent(progress)) / 100);
    stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}\x1b[K`);
    barOpen = true;
  };

  return {
    update(progress) {
      const key = `${progress.table}.${progress.column}`;
      if (tty) {
        // One bar per column: a finished column keeps its line, the next one starts below it.
        if (barOpen && barKey !== key) stream.write('\n');
        barKey = key;
        drawBar(progress);
        return;
      }
      const state = columns.get(key);
      const complete = progress.done >= progress.total;
      if (state === undefined) {
        columns.set(key, { lastPrinted: now(), updatesSincePrint: 0, latest: progress, printedLatest: true, printedComplete: complete });
        printLine(progress);
        return;
      }
      state.latest = progress;
      state.updatesSincePrint += 1;
      const due =
        (complete && !state.printedComplete) ||
        now() - state.lastPrinted >= intervalMs ||
        (options.everyUpdates !== undefined && state.updatesSincePrint >= options.everyUpdates);
      state.printedLatest = false;
      if (!due) return;
      state.lastPrinted = now();
      state.updatesSincePrint = 0;
      state.printedLatest = true;
      state.printedComplete ||= complete;
      printLine(progress);
    },
    finish() {
      if (tty) {
        if (barOpen) stream.write('\n');
        barOpen = false;
        return;
      }
      for (const state of columns.values()) if (!state.printedLatest) printLine(state.latest);
    },
  };
}

function percent(progress: Progress): number {
  if (progress.total <= 0) return 100;
  return Math.min(100, Math.floor((progress.done / progress.total) * 100));
}
