import type { Command } from 'commander';
import type { CliIo, SealingRuntime } from '../runtime.js';

/** keys status, keys reencrypt and encrypt-existing: wired to src/seal/maintenance. */
export function registerKeyMaintenance(_keys: Command, _program: Command, _io: CliIo): void {}

export async function reencryptScopes(_runtime: SealingRuntime, _io: CliIo, _scopes: string[]): Promise<void> {}
