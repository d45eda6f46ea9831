import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { DEFAULT_AIRTABLE_KEY, startAirtableFake, type AirtableFake } from '../fakes/airtable.js';
import { assertOneLine, stopChildren } from '../helpers/cli.js';
import { openCliWorkspace, type CliWorkspace } from '../helpers/cli-identity.js';
import { describeEachBackend } from '../helpers/database.js';
import { randomPhone } from '../helpers/relay.js';
import { badPhoneLine, exportFixture, storedText } from '../relay/import/export-fixtures.js';

after(stopChildren);

/** tenant.json wired to the Airtable fake; the webhook is given, so `tenants put` calls nothing. */
function tenantJson(baseId: string, fields: Record<string, string>): string {
  return JSON.stringify({
    name: 'Acme Dental',
    airtable: {
      apiKey: DEFAULT_AIRTABLE_KEY,
      baseId,
      table: 'Conversations',
      fields,
      webhookId: `ach${randomBytes(7).toString('hex')}`,
      macSecretBase64: randomBytes(32).toString('base64'),
    },
  });
}

describe('import: usage', () => {
  let space: CliWorkspace;
  before(async () => {
    space = await openCliWorkspace('pglite', 'import-usage');
    assert.equal((await space.run(['tenants', 'put', 'acme'], { stdin: JSON.stringify({ name: 'Acme' }) })).code, 0);
  });
  after(() => space?.cleanup());

  test('bad options are usage errors (2); an unknown tenant or one without Airtable is a failure (1); one line each, nothing imported', async () => {
    const results = await space.runAll([
      { args: ['import', 'jsonl'], stdin: '' },
      { args: ['import', 'airtable', '--tenant', 'acme', '--page-size', '0'] },
      { args: ['import', 'jsonl', '--tenant', 'acme', '--default-country', 'XX'], stdin: '' },
      { args: ['import', 'jsonl', '--tenant', 'nobody'], stdin: '' },
      { args: ['import', 'airtable', '--tenant', 'acme'] },
    ]);
    const [noTenant, badPageSize, badCountry, unknownTenant, noAirtable] = results;
    assert.equal(noTenant!.code, 2);
    assert.match(noTenant!.stderr, /required option '--tenant <slug>'/);
    assert.equal(badPageSize!.code, 2);
    assert.equal(badPageSize!.stderr, 'ciphergate: --page-size: expected a whole number from 1 to 100\n');
    assert.equal(badCountry!.code, 2);
    assert.match(badCountry!.stderr, /^ciphergate: --default-country: expected a two-letter country code/);
    assert.equal(unknownTenant!.code, 1);
    assert.equal(unknownTenant!.stderr, 'ciphergate: --tenant: no tenant "nobody"\n');
    assert.equal(noAirtable!.code, 1);
    assert.match(noAirtable!.stderr, /^ciphergate: tenant acme has no airtable block/);
    for (const result of [badPageSize, badCountry, unknownTenant, noAirtable]) {
      assertOneLine(result!.stderr);
      assert.equal(result!.stdout, '');
    }
  });
});

await describeEachBackend('import through the CLI', (backend) => {
  let space: CliWorkspace;
  let airtable: AirtableFake;
  const baseId = `app${randomBytes(7).toString('hex')}`;
  let tenantId: string;

  before(async () => {
    airtable = await startAirtableFake();
    space = await openCliWorkspace(backend, 'import');
    space.env.CIPHERGATE_AIRTABLE_API_URL = airtable.url;
    const put = await space.run(['tenants', 'put', 'acme'], { stdin: tenantJson(baseId, { phone: 'masked', name: 'masked', body: 'sealed' }) });
    assert.equal(put.code, 0, put.stderr);
    tenantId = /\(([0-9a-f-]{36})\)/.exec(put.stdout)![1]!;
  });
  after(async () => {
    await space?.cleanup();
    await airtable?.close();
  });

  test('jsonl: an export is imported sealed, a second run adds nothing, a bad line stops with its number (exit 1)', async () => {
    const fixture = exportFixture();
    const first = await space.run(['import', 'jsonl', '--tenant', 'acme', '--progress-every', '1'], { stdin: fixture.text });
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, 'imported 3 conversations (5 messages), skipped 0 already present\n');
    assert.equal(first.stderr.trimEnd().split('\n').length, 3, 'a progress line per conversation');
    assert.match(first.stderr, /^ciphergate: import jsonl: line 3: 3 conversations with 5 new messages, 0 already present$/m);

    const second = await space.run(['import', 'jsonl', '--tenant', 'acme'], { stdin: fixture.text });
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, 'imported 0 conversations (0 messages), skipped 3 already present\n');

    const more = exportFixture();
    const [line1, line2] = more.text.split('\n');
    const bad = await space.run(['import', 'jsonl', '--tenant', 'acme'], { stdin: `${line1}\n${badPhoneLine()}${line2}\n` });
    assert.equal(bad.code, 1);
    assertOneLine(bad.stderr);
    assert.equal(
      bad.stderr,
      'ciphergate: line 2: phone: is not a phone number; the import stopped at this line and the lines before it are imported (1 conversation with 2 new messages, 0 already present); fix the line and run the same command again (lines already imported are not imported twice)\n',
    );
    assert.equal(bad.stdout, '');

    for (const output of [first, second, bad]) {
      for (const canary of [...fixture.canaries, ...more.canaries, 'canary']) assert.equal((output.stdout + output.stderr).includes(canary), false, `${canary} printed`);
    }
    const server = await space.openServer();
    try {
      const stored = await storedText(server.db, tenantId);
      for (const canary of [...fixture.canaries, ...more.canaries]) assert.equal(stored.includes(canary), false, `${canary} stored in plain text`);
      const messages = await queryRows<{ dedupe_key: string }>(server.db, sql`select dedupe_key from messages where tenant_id = ${tenantId} and dedupe_key like 'import:jsonl:%'`);
      assert.equal(messages.length, 7, 'five from the first file, two from the line before the bad one');
      assert.equal(new Set(messages.map((message) => message.dedupe_key)).size, 7);
      const audit = await queryRows<{ action: string; outcome: string }>(server.db, sql`select action, outcome from audit_events where tenant_id = ${tenantId} and action = 'import.jsonl' order by seq`);
      assert.deepEqual(audit.map((event) => event.outcome), ['success', 'success', 'failure']);
    } finally {
      await server.close();
    }
  });

  test('airtable: stops when Airtable fails on the second page (exit 1), continues on the next run, and leaves no plain text in Airtable', async () => {
    const tag = randomBytes(4).toString('hex');
    const phones = [randomPhone(), randomPhone()];
    const rows = Array.from({ length: 5 }, (_, index) => ({
      Phone: phones[index % 2]!,
      Name: `Quintessa${tag} Lopez`,
      Body: `canary-${tag}-${index}`,
      Direction: index < 2 ? 'inbound' : 'outbound',
      Created: new Date(Date.UTC(2024, 2, 1, 10, index)).toISOString(),
    }));
    const recordIds = rows.map((fields) => airtable.addRecord(baseId, 'Conversations', fields));
    airtable.failNext({ kind: 'status', status: 500 }, { match: (request) => request.method === 'GET' && request.query.has('offset') });

    const stopped = await space.run(['import', 'airtable', '--tenant', 'acme', '--page-size', '2']);
    assert.equal(stopped.code, 1, stopped.stderr);
    assert.equal(stopped.stdout, '');
    const stoppedLines = stopped.stderr.trimEnd().split('\n');
    assert.match(stoppedLines[0]!, /^ciphergate: import airtable: page 1: 2 rows read, 2 messages imported, 2 rows rewritten/);
    assert.equal(
      stoppedLines.at(-1),
      'ciphergate: import airtable stopped: Airtable answered 500 (SERVER_ERROR); the rows read before (1 page in this run) are imported and recorded; run the same command again to continue',
    );

    const resumed = await space.run(['import', 'airtable', '--tenant', 'acme', '--page-size', '2']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /^ciphergate: note: continuing the import that stopped on /m);
    assert.match(resumed.stderr, /^ciphergate: import airtable: page 2: 3 rows read, 3 messages imported/m);
    assert.equal(resumed.stdout, 'imported 2 conversations (3 messages), skipped 0 rows already imported\n');

    const table = airtable.tables.get(`${baseId}/Conversations`)!;
    const tableText = JSON.stringify(recordIds.map((id) => table.get(id)));
    for (const canary of [`canary-${tag}`, `Quintessa${tag}`, ...phones.map((phone) => phone.slice(2))]) {
      assert.equal(tableText.includes(canary), false, `${canary} left in Airtable`);
    }
    for (const output of [stopped, resumed]) assert.equal((output.stdout + output.stderr).includes('canary'), false);

    const server = await space.openServer();
    try {
      const messages = await queryRows<{ id: string; dedupe_key: string }>(server.db, sql`select id, dedupe_key from messages where tenant_id = ${tenantId} and dedupe_key like 'import:airtable:%'`);
      assert.deepEqual(messages.map((message) => message.dedupe_key).sort(), recordIds.map((id) => `import:airtable:${id}`).sort(), 'each row once');
      for (const message of messages) {
        const recordId = message.dedupe_key.slice('import:airtable:'.length);
        assert.deepEqual(
          { id: table.get(recordId)!['Ciphergate ID'], body: table.get(recordId)!['Body'], name: table.get(recordId)!['Name'] },
          { id: message.id, body: `sealed:${message.id}`, name: 'Q. L.' },
        );
      }
      const stored = await storedText(server.db, tenantId);
      assert.equal(stored.includes(`canary-${tag}`), false);
      const runs = await queryRows<{ state: string; imported: number }>(server.db, sql`select state, imported from import_runs where tenant_id = ${tenantId} and source = 'airtable'`);
      assert.deepEqual(runs, [{ state: 'done', imported: 5 }]);
    } finally {
      await server.close();
    }
    assert.deepEqual(airtable.violations, []);
  });
});
