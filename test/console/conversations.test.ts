import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { openConsoleBrowser, signInThroughConsole, type ConsoleBrowser } from '../helpers/console-browser.js';
import { randomPhone } from '../helpers/relay.js';

/**
 * Conversations in the console: a lookup lists a contact's conversations with the number masked
 * and no body; opening one is an audited reveal whose bodies render as text, whatever they hold;
 * a client user sees only their own tenant.
 */

const HOSTILE_BODIES = ['<img src=x onerror=alert(1)>', '</script><script>alert(1)</script>'];

let cb: ConsoleBrowser;
let acme: string;
let globex: string;
let phone: string;
before(async () => {
  cb = await openConsoleBrowser();
  acme = (await cb.harness.putTenant()).slug;
  globex = (await cb.harness.putTenant()).slug;
  phone = randomPhone();
  for (const body of HOSTILE_BODIES) assert.equal((await cb.harness.sendSms(acme, phone, body)).response.statusCode, 200);
});
after(() => cb?.close());

async function lookUp(watched: Awaited<ReturnType<ConsoleBrowser['newPage']>>, tenantName: string, number: string) {
  await watched.page.goto(`${cb.baseUrl}/console/conversations`);
  await watched.page.getByLabel('Tenant').selectOption({ label: tenantName });
  await watched.page.getByLabel("Contact's phone number").fill(number);
  await watched.page.getByRole('button', { name: 'Find conversations' }).click();
  await watched.page.waitForLoadState();
}

test('a lookup lists the conversation masked and without bodies; opening it is one audited reveal whose bodies are text', async () => {
  const employee = await cb.harness.createUser({ role: 'employee' });
  const watched = await cb.newPage();
  let dialogs = 0;
  watched.page.on('dialog', (dialog) => {
    dialogs += 1;
    void dialog.dismiss();
  });
  await signInThroughConsole(watched, cb.baseUrl, employee);
  await lookUp(watched, `Tenant ${acme}`, phone);
  const listHtml = await watched.page.content();
  // The reply form keeps the number the person typed (a hidden field of this no-store page); the list shows it masked.
  const list = await watched.page.locator('table').innerText();
  assert.ok(!list.includes(phone.slice(2)), 'the full number is not in the list');
  assert.ok(list.includes(phone.slice(-4)), 'its last digits are');
  for (const body of HOSTILE_BODIES) assert.ok(!listHtml.includes('onerror') && !listHtml.includes(body), 'no body on the list page');
  await watched.check('conversations');

  const before = await auditReads(employee.id);
  const link = watched.page.getByRole('link', { name: /Open the conversation/ });
  await link.click();
  await watched.page.waitForURL(/\/console\/conversations\/[0-9a-f-]{36}$/);
  const response = await watched.page.reload();
  assert.equal(response?.headers()['cache-control'], 'no-store');
  const conversationId = watched.page.url().split('/').pop()!;
  assert.deepEqual(await watched.page.locator('.message .body').allTextContents(), HOSTILE_BODIES);
  assert.equal(await watched.page.locator('.message img, main script').count(), 0, 'no element was made from a body');
  assert.equal(dialogs, 0);
  await watched.check('conversation');

  const reads = (await auditReads(employee.id)).slice(before.length);
  assert.equal(reads.length, 2, 'one audit entry per opening (the click and the reload)');
  for (const read of reads) assert.equal(read.target_id, conversationId);
});

test('a client user sees only their tenant: the picker lists it alone, and another tenant reads as absent', async () => {
  const globexTenantId = (await cb.harness.relay.tenants.bySlug(globex))!.id;
  const client = await cb.harness.createUser({ role: 'client', tenantId: globexTenantId });
  const staff = await cb.harness.createUser({ role: 'employee' });
  const watchedStaff = await cb.newPage();
  await signInThroughConsole(watchedStaff, cb.baseUrl, staff);
  await lookUp(watchedStaff, `Tenant ${acme}`, phone);
  const acmeConversation = await watchedStaff.page.getByRole('link', { name: /Open the conversation/ }).getAttribute('href');

  const watched = await cb.newPage();
  await signInThroughConsole(watched, cb.baseUrl, client);
  await watched.page.goto(`${cb.baseUrl}/console/conversations`);
  assert.deepEqual(await watched.page.getByLabel('Tenant').locator('option').allTextContents(), [`Tenant ${globex}`]);
  await watched.check('conversations-client');

  const opened = await watched.page.goto(`${cb.baseUrl}${acmeConversation}`);
  assert.equal(opened?.status(), 404);
  assert.doesNotMatch(await watched.page.content(), /onerror|alert\(1\)/);
  // A forged lookup naming the other tenant is refused the same way.
  const csrf = await (await watched.page.goto(`${cb.baseUrl}/console/conversations`))!.text().then((html) => /name="_csrf" value="([^"]+)"/.exec(html)![1]!);
  const forged = await watched.context.request.post(`${cb.baseUrl}/console/conversations`, { form: { _csrf: csrf, tenant: acme, phone }, maxRedirects: 0 });
  assert.ok(forged.status() === 403 || forged.status() === 404, `status ${forged.status()}`);
  assert.doesNotMatch(await forged.text(), /Open the conversation/);
});

test('a reply goes through the messages use case once, however often its form is sent', async () => {
  const employee = await cb.harness.createUser({ role: 'employee' });
  const watched = await cb.newPage();
  await signInThroughConsole(watched, cb.baseUrl, employee);
  await lookUp(watched, `Tenant ${acme}`, phone);
  const form = watched.page.locator('form', { has: watched.page.getByRole('button', { name: 'Send reply' }) });
  const fields = Object.fromEntries(
    await Promise.all(['_csrf', 'action', 'tenant', 'phone', 'idempotencyKey'].map(async (name) => [name, await form.locator(`input[name="${name}"]`).inputValue()] as const)),
  );
  const body = 'See you at 3 <b>pm</b>';
  await watched.page.getByLabel('Message').fill(body);
  await watched.check('conversations-reply');
  await watched.page.getByRole('button', { name: 'Send reply' }).click();
  await watched.page.waitForLoadState();
  assert.equal(await watched.page.getByRole('status').textContent(), 'Reply queued for sending.');

  // The same form again (a double click, a resubmission): one message, and the page says so.
  const again = await watched.context.request.post(`${cb.baseUrl}/console/conversations`, { form: { ...fields, body }, maxRedirects: 0 });
  assert.equal(again.status(), 200);
  assert.match(await again.text(), /This reply was already sent\./);

  await watched.page.getByRole('link', { name: /Open the conversation/ }).click();
  await watched.page.waitForURL(/\/console\/conversations\/[0-9a-f-]{36}$/);
  const outbound = await watched.page.locator('.message.outbound .body').allTextContents();
  assert.deepEqual(outbound, [body]);
  assert.equal(await watched.page.locator('.message b').count(), 0);
  watched.assertClean();
});

async function auditReads(actorId: string): Promise<Array<{ target_id: string }>> {
  return queryRows<{ target_id: string }>(
    cb.harness.db,
    sql`select target_id from audit_events where action = 'conversation.read' and actor_id = ${actorId} order by seq`,
  );
}
