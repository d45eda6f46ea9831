import type { Command } from 'commander';
import { isLoopbackUrl } from '../../config/public-url.js';
import { parseTenantDocument, TenantDocumentError } from '../../config/tenant-document.js';
import { TENANT_SLUG_PATTERN } from '../../domain/ids.js';
import type { TenantSummary } from '../../domain/tenant.js';
import { deleteTenant, putTenant } from '../../relay/tenant-admin.js';
import { runSetupTest, type SetupTestDelivery } from '../../relay/setup-test.js';
import { listAllTenants } from '../../relay/tenant-catalogue.js';
import { CliError } from '../errors.js';
import { openSealingRuntime, openRuntime, type CliIo } from '../runtime.js';
import { readStdin } from '../stdin.js';

export function registerTenants(program: Command, io: CliIo): void {
  const tenantsCommand = program.command('tenants').description('tenants and their provider settings');

  tenantsCommand
    .command('put')
    .description('create or update a tenant from tenant.json on stdin; secrets are stored sealed; prints the webhook URLs')
    .argument('<slug>', 'lower-case letters, digits and dashes, e.g. acme-dental')
    .action(async (slug: string) => {
      checkSlug(slug);
      const text = await readStdin(io.stdin, 'tenant.json', 256 * 1024);
      let document;
      try {
        document = parseTenantDocument(text);
      } catch (error) {
        if (error instanceof TenantDocumentError) throw new CliError(error.message);
        throw error;
      }
      const runtime = await openSealingRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        const deps = {
          db: runtime.database.db,
          fields: runtime.sealing.fields,
          keyring: runtime.sealing.keyring,
          publicUrl: runtime.config.publicUrl,
          airtableApiUrl: runtime.config.providers.airtableApiUrl,
        };
        const outcome = await putTenant(deps, slug, document, { type: 'system', id: 'cli' }, (webhook) =>
          io.stderr.write(`ciphergate: note: ${webhook.created ? 'created' : 'kept'} Airtable webhook ${webhook.id} on base ${webhook.baseId}\n`),
        );
        if (!outcome.ok) throw new CliError(putRefusal(slug, outcome));
        const { tenant, created } = outcome;
        io.stdout.write(`${created ? 'created' : 'updated'} tenant ${tenant.slug} (${tenant.id})\n`);
        io.stdout.write(webhookLines(runtime.config.publicUrl, tenant));
        if (isLoopbackUrl(runtime.config.publicUrl)) io.stderr.write(`ciphergate: warning: ${loopbackWarning(runtime.config.publicUrl)}\n`);
      } finally {
        await runtime.close();
      }
    });

  tenantsCommand
    .command('delete')
    .description('crypto-shred a tenant: destroy its data keys (its sealed data is unreadable at once), then remove its rows; irreversible')
    .argument('<slug>', 'the tenant')
    .option('--shred', 'required: deletion is only by crypto-shredding')
    .action(async (slug: string, options: { shred?: boolean }) => {
      if (!options.shred) throw new CliError('tenants delete: a tenant is deleted only by crypto-shredding its keys, which cannot be undone; add --shred', 2);
      checkSlug(slug);
      // No key provider is opened: destroying wrapped keys and deleting rows needs no KEK, so a
      // tenant can be shredded even when the KEK is unavailable.
      const runtime = await openRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        const result = await deleteTenant(runtime.database.db, slug, { type: 'system', id: 'cli' });
        if (!result) throw new CliError(`tenants delete: no tenant ${JSON.stringify(slug)}`);
        const keys = result.destroyedVersions.length > 0 ? `destroyed data keys v${result.destroyedVersions.join(', v')}` : 'data keys were already destroyed';
        io.stdout.write(`tenant ${slug} (${result.tenantId}): ${keys}\n`);
        if (result.removedRows === undefined) {
          io.stdout.write(`tenant ${slug}: rows already removed by another run\n`);
        } else {
          const removed = Object.entries(result.removedRows).filter(([, count]) => count > 0);
          io.stdout.write(`tenant ${slug}: removed ${removed.map(([table, count]) => `${count} ${table}`).join(', ')}\n`);
        }
      } finally {
        await runtime.close();
      }
    });

  tenantsCommand
    .command('list')
    .description('slugs and which providers are configured (never secrets)')
    .option('--json', 'one JSON document instead of a table')
    .action(async (options: { json?: boolean }) => {
      const runtime = await openRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      try {
        // Listing needs no keys: nothing sealed is read.
        const all = await listAllTenants(runtime.database.db);
        if (options.json) {
          io.stdout.write(`${JSON.stringify(all.map(({ id, slug, name, providers }) => ({ id, slug, name, providers })), null, 2)}\n`);
          return;
        }
        if (all.length === 0) {
          io.stdout.write('no tenants\n');
          return;
        }
        const width = Math.max(4, ...all.map((tenant) => tenant.slug.length));
        io.stdout.write(`${'SLUG'.padEnd(width)}  PROVIDERS                     NAME\n`);
        for (const tenant of all) {
          io.stdout.write(`${tenant.slug.padEnd(width)}  ${(tenant.providers.join(',') || '-').padEnd(28)}  ${tenant.name}\n`);
        }
      } finally {
        await runtime.close();
      }
    });

  tenantsCommand
    .command('test')
    .description("sends correctly signed test deliveries to the tenant's public webhook URLs and reports each hop; exit 0 when all pass")
    .argument('<slug>', 'the tenant')
    .option('--json', 'one JSON document instead of lines')
    .action(async (slug: string, options: { json?: boolean }) => {
      checkSlug(slug);
      const runtime = await openSealingRuntime(io, { logTo: 'stderr', defaultLogLevel: 'warn' });
      let passed: boolean;
      let tested: boolean;
      try {
        const deps = { db: runtime.database.db, fields: runtime.sealing.fields, keyring: runtime.sealing.keyring, publicUrl: runtime.config.publicUrl };
        const outcome = await runSetupTest(deps, slug, { type: 'system', id: 'cli' });
        if (!outcome.ok) throw new CliError(`tenants test: no tenant ${JSON.stringify(slug)}`);
        passed = outcome.passed;
        tested = outcome.deliveries.some((delivery) => delivery.provider !== 'airtable');
        if (options.json) io.stdout.write(`${JSON.stringify({ tenant: outcome.tenant.slug, passed, deliveries: outcome.deliveries }, null, 2)}\n`);
        else io.stdout.write(setupTestLines(outcome.tenant.slug, outcome.deliveries, passed));
      } finally {
        await runtime.close();
      }
      if (!passed) throw new CliError(`tenants test: ${slug}: ${tested ? 'a hop failed (see the hints above)' : 'nothing to test (no twilio or podium block)'}`);
    });
}

/** The setup test's report: one line per hop, its hint indented below a failed one. */
function setupTestLines(slug: string, deliveries: SetupTestDelivery[], passed: boolean): string {
  if (deliveries.length === 0) return `tenant ${slug}: no provider to test (no twilio or podium block)\n`;
  const lines: string[] = [];
  for (const delivery of deliveries) {
    lines.push(`${delivery.provider} ${delivery.url}`);
    for (const hop of delivery.hops) {
      lines.push(`  ${hop.result.padEnd(7)} ${hop.hop.padEnd(9)} ${hop.detail}`);
      if (hop.hint) lines.push(`          hint: ${hop.hint}`);
    }
  }
  lines.push(passed ? `tenant ${slug}: every hop passed` : `tenant ${slug}: FAILED`);
  return `${lines.join('\n')}\n`;
}

function checkSlug(slug: string): void {
  if (!TENANT_SLUG_PATTERN.test(slug)) throw new CliError(`slug: expected lower-case letters, digits and dashes (1-63, starting with a letter or digit), got ${JSON.stringify(slug)}`, 2);
}

/** Said wherever a half-shredded tenant is met: the keys are gone, only step 2 is left. */
export function unfinishedShred(slug: string): string {
  return `tenant ${slug}: its data keys were destroyed; finish the deletion with \`ciphergate tenants delete ${slug} --shred\`, then the slug can be used again`;
}

/** What an operator hears when `tenants put` is refused. */
function putRefusal(slug: string, outcome: Exclude<Awaited<ReturnType<typeof putTenant>>, { ok: true }>): string {
  switch (outcome.code) {
    case 'scope-destroyed':
      return unfinishedShred(slug);
    case 'airtable-table-missing':
      return `airtable: base ${outcome.baseId} has no table ${JSON.stringify(outcome.table)}`;
    case 'airtable-webhook-refused':
      return `airtable: could not create the webhook (${outcome.message}); check the token's scopes (webhook:manage, schema.bases:read) or give webhookId and macSecretBase64`;
  }
}

/**
 * Said when the printed URLs point at this machine: a provider cannot call them, and the
 * signatures are checked against the same URL, so setting CIPHERGATE_PUBLIC_URL later changes them.
 */
export function loopbackWarning(publicUrl: string): string {
  return `these URLs point at this machine (CIPHERGATE_PUBLIC_URL is ${publicUrl}); providers cannot reach them. Set CIPHERGATE_PUBLIC_URL to the https origin providers call (a tunnel on a laptop: docs/providers.md) and give them the URLs printed then`;
}

/** The URLs to paste into each provider's console, built from CIPHERGATE_PUBLIC_URL (never a Host header). */
export function webhookLines(publicUrl: string, tenant: TenantSummary): string {
  const base = `${publicUrl}/webhooks`;
  const lines: string[] = [];
  if (tenant.providers.includes('twilio')) {
    lines.push(`twilio sms:     ${base}/twilio/${tenant.slug}/sms`, `twilio status:  ${base}/twilio/${tenant.slug}/status`);
  }
  if (tenant.providers.includes('podium')) lines.push(`podium:         ${base}/podium/${tenant.slug}`);
  if (tenant.providers.includes('airtable')) lines.push(`airtable:       ${base}/airtable/${tenant.slug}`);
  return lines.length ? `${lines.join('\n')}\n` : 'no provider webhooks (no twilio, podium or airtable block)\n';
}
