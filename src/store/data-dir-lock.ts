import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export class DataDirLockedError extends Error {
  override readonly name = 'DataDirLockedError';

  /** The process that holds the folder, when one does. */
  constructor(
    message: string,
    readonly holder?: number,
  ) {
    super(message);
  }
}

/**
 * A pid file that keeps a second process off an embedded database folder. A lock left by a
 * process that no longer exists (a crash, SIGKILL) is taken over.
 */
export class DataDirLock {
  private released = false;

  private constructor(private readonly path: string) {}

  static acquire(dataDir: string): DataDirLock {
    const path = join(dataDir, 'ciphergate.pid');
    for (let attempt = 0; attempt < 2; attempt += 1) {
      try {
        const fd = openSync(path, 'wx', 0o600);
        writeSync(fd, String(process.pid));
        closeSync(fd);
        return new DataDirLock(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const holder = Number(readFileSync(path, 'utf8').trim());
        if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isAlive(holder)) {
          throw new DataDirLockedError(
            `database: ${dataDir} is in use by process ${holder}; the embedded database takes one process (use CIPHERGATE_DATABASE_URL for several)`,
            holder,
          );
        }
        unlinkSync(path);
      }
    }
    throw new DataDirLockedError(`database: could not lock ${dataDir}`);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone: nothing to release.
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
