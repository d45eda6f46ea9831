import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { rotateSigningKeyAsOperator } from '../../identity/tokens/signing-key-rotation.js';
import { RETIRED_KEY_VERIFICATION_WINDOW_MS } from '../../identity/tokens/signing-keys.js';
import { counted } from '../counted.js';
import { initHsmKek } from '../../keys/init-hsm.js';
import { rotateDataKey } from '../../keys/rotate.js';
import { rewrapUnderConfiguredKek, type FormerKek } from '../../runtime/rewrap.js';
import { CliError } from '../errors.js';
import { withIdentity } from '../identity-runtime.js';
import { openRuntime, openSealingRuntime, type CliIo, type Runtime } from '../runtime.js';
import { registerKeyMaintenance, reencryptScopes, scopesFor } from './key-maintenance.js';
import { unfinishedShred } from './tenants.js';

export function registerKeys(program: Command, io: CliIo): void {
  const keys = program.command('keys').description('data keys, the root key (KEK) and token-signing keys');

  keys
    .command('rotate')
    .description('make a new data-key version (every scope, or one tenant); new writes use it at once, then old values are moved forward')
    .option('--tenant <slug>', 'only this tenant')
    .option('--no-reencrypt', 'only make the new version; move old values later with `keys reencrypt` (the server also does it in the background)')
    .action(async (options: { tenant?: string; reencrypt: boolean }) => {
      const runtime = await openSealingRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        const scopes = await scopesFor(runtime, options.tenant);
        const rotated: typeof scopes = [];
        for (const { scope, label, slug } of scopes) {
          const outcome = await rotateDataKey(runtime.database.db, runtime.sealing.keyring, scope, { type: 'system', id: 'cli' });
          if (!outcome.ok) {
            // A shredded tenant whose rows are not removed yet: never re-keyed.
            if (options.tenant !== undefined) throw new CliError(unfinishedShred(slug ?? scope));
            io.stderr.write(`ciphergate: note: skipped ${unfinishedShred(slug ?? scope)}\n`);
            continue;
          }
          rotated.push({ scope, label, slug });
          io.stdout.write(`${label}: now on data key v${outcome.version}\n`);
        }
        if (options.reencrypt) await reencryptScopes(runtime, io, rotated.map((entry) => entry.scope));
      } finally {
        await runtime.close();
      }
    });

  keys
    .command('rewrap')
    .description('re-wrap every data key under the configured KEK (data rows are not touched); afterwards the old KEK is not needed')
    .option('--from-master-key-file <path>', 'the old local master key (base64 of 32 bytes in a file)')
    .option('--from-pkcs11-key-label <label>', 'the old KEK label in the configured PKCS#11 token')
    .action(async (options: { fromMasterKeyFile?: string; fromPkcs11KeyLabel?: string }) => {
      if ((options.fromMasterKeyFile === undefined) === (options.fromPkcs11KeyLabel === undefined)) {
        throw new CliError('keys rewrap: give exactly one of --from-master-key-file or --from-pkcs11-key-label', 2);
      }
      const runtime = await openRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        const { outcome, fromKekId, toKekId } = await rewrapUnderConfiguredKek(runtime, () => formerKek(runtime.config, options));
        if (!outcome.ok) throw new CliError('keys rewrap: the old and the configured KEK are the same key');
        io.stdout.write(`re-wrapped ${counted(outcome.rewrapped, 'data key')} from ${fromKekId} to ${toKekId} (${outcome.alreadyCurrent} already there)\n`);
      } finally {
        await runtime.close();
      }
    });

  keys
    .command('init-hsm')
    .description('create the KEK inside the configured PKCS#11 token (non-extractable AES-256); a no-op when it exists')
    .action(async () => {
      const runtime = await openRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        const config = runtime.config.keys;
        if (config.provider !== 'pkcs11') throw new CliError('keys init-hsm: set CIPHERGATE_KEY_PROVIDER=pkcs11 and the CIPHERGATE_PKCS11_* variables first', 2);
        const result = await initHsmKek(runtime.database.db, config);
        io.stdout.write(`${result.kekId} in token "${result.tokenLabel}": ${result.created ? 'created' : 'already present'}\n`);
      } finally {
        await runtime.close();
      }
    });

  keys
    .command('rotate-signing')
    .description(
      'make a new token-signing key; new access tokens use it (running servers switch at their next key refresh, every 10 s) ' +
        'and the old key keeps verifying until the tokens it signed have expired; prints the new kid',
    )
    .action(async () => {
      const { kid, retired } = await withIdentity(io, (identity) => rotateSigningKeyAsOperator(identity));
      io.stdout.write(`${kid}\n`);
      if (retired.length > 0) {
        io.stderr.write(`ciphergate: note: retired ${retired.join(', ')}; ${retired.length === 1 ? 'it verifies' : 'they verify'} tokens for ${RETIRED_KEY_VERIFICATION_WINDOW_MS / 1000} s more\n`);
      }
    });

  registerKeyMaintenance(keys, program, io);
}

/** The former KEK named on the command line; refusals here are the operator's to fix. */
function formerKek(config: Runtime['config'], options: { fromMasterKeyFile?: string; fromPkcs11KeyLabel?: string }): FormerKek {
  if (options.fromMasterKeyFile !== undefined) {
    let masterKey: string;
    try {
      masterKey = readFileSync(options.fromMasterKeyFile, 'utf8').trim();
    } catch (error) {
      throw new CliError(`--from-master-key-file: cannot read ${options.fromMasterKeyFile} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    return { masterKey };
  }
  if (config.keys.provider !== 'pkcs11') throw new CliError('--from-pkcs11-key-label needs CIPHERGATE_KEY_PROVIDER=pkcs11 (the old key lives in the same token)', 2);
  return { pkcs11KeyLabel: options.fromPkcs11KeyLabel! };
}
