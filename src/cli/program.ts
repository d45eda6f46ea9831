import { Command, CommanderError } from 'commander';
import { SettingError } from '../config/load.js';
import { registerApiKeys } from './commands/api-keys.js';
import { registerAudit } from './commands/audit.js';
import { registerMigrate } from './commands/migrate.js';
import { registerKeys } from './commands/keys.js';
import { registerServe } from './commands/serve.js';
import { registerTenants } from './commands/tenants.js';
import { registerUsers } from './commands/users.js';
import { registerJobs } from './commands/jobs.js';
import { registerImport } from './commands/import.js';
import { registerWorker } from './commands/worker.js';
import { registerStatus } from './commands/status.js';
import { registerStore } from './commands/store.js';
import { CIPHERGATE_VERSION } from '../config/version.js';
import { CliError, EXIT } from './errors.js';
import { refuseMissingSubcommand, usageErrorLine } from './usage-errors.js';
import type { CliIo } from './runtime.js';

export function buildProgram(io: CliIo): Command {
  const program = new Command('ciphergate')
    .description('Ciphergate: a security gateway for conversation data')
    .version(`ciphergate ${CIPHERGATE_VERSION}`, '-V, --version', 'print the version')
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // Commander's own usage errors in the one documented form (see usage-errors.ts).
      outputError: (text, write) => write(usageErrorLine(text)),
    });
  registerServe(program, io, runCli);
  registerMigrate(program, io);
  registerAudit(program, io);
  registerTenants(program, io);
  registerUsers(program, io);
  registerApiKeys(program, io);
  registerKeys(program, io);
  registerJobs(program, io);
  registerWorker(program, io);
  registerImport(program, io);
  registerStatus(program, io);
  registerStore(program, io);
  // Every subcommand reports usage errors instead of exiting the process itself, so the one
  // place below decides the exit code.
  const exitOverride = (command: Command) => {
    command.exitOverride();
    if (command !== program && command.commands.length > 0) refuseMissingSubcommand(command);
    command.commands.forEach(exitOverride);
  };
  exitOverride(program);
  return program;
}

/** Runs the CLI and returns the exit code: 0 success, 1 failure, 2 bad usage. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const program = buildProgram(io);
  if (argv.length === 0) {
    io.stderr.write('ciphergate: no command given (ciphergate --help lists them)\n');
    return EXIT.usage;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are not failures; commander has already printed its message.
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return EXIT.ok;
      if (error.code === 'commander.executeSubCommandAsync') return EXIT.failure;
      return EXIT.usage;
    }
    io.stderr.write(`ciphergate: ${oneLine(describe(error))}\n`);
    if (error instanceof CliError) return error.exitCode;
    return EXIT.failure;
  }
}

function describe(error: unknown): string {
  if (error instanceof SettingError || error instanceof CliError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
