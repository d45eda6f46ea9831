import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import ts from 'typescript';
import { AUDIT_ACTION_NAMES, isAuditAction } from '../../src/domain/audit-actions.js';
import { appendAuditEvent } from '../../src/store/audit-trail.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { assertProblem } from '../helpers/problems.js';

// GET /api/v1/audit?action= only took `^[a-z0-9.-]{1,64}$`, so `auth.phone_verified` and
// `auth.sms_code_sent`, which the sign-in code writes, could not be filtered for (400), while a
// misspelt action gave an empty page. The actions are now one catalogue (src/domain/audit-actions.ts)
// that appendAuditEvent's type enforces and the filter accepts exactly. This test derives what
// the code writes by scanning src/, so actions added later are covered without editing it.

const SRC = join(import.meta.dirname, '../../src');
const CATALOGUE = join(SRC, 'domain/audit-actions.ts');
/** The shape of an audit action: dotted lower-case words (`auth.login`, `auth.sms_code_sent`). */
const ACTION_SHAPE = /^[a-z][a-z0-9-]*(\.[a-z0-9_-]+)+$/;

interface WrittenAction {
  action: string;
  where: string;
}

/**
 * Every string in src/ that is written as an audit action: the value of an `action` property
 * (`{ action: 'x' }`, also through `?:`, `??`, `as`, `satisfies` and same-file constants), and
 * an argument passed to a parameter named `action` of a function or method declared in the same
 * file (`this.spendIpAllowance(origin, 'auth.totp.confirm')`). Only dotted names count, which
 * leaves out other `action` properties (`frameguard: { action: 'deny' }`).
 */
function writtenActions(): WrittenAction[] {
  const found: WrittenAction[] = [];
  for (const path of sourceFiles(SRC)) {
    if (path === CATALOGUE) continue;
    const file = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
    const constants = new Map<string, ts.Expression>();
    const actionParameters = new Map<string, number[]>();
    const collect = (node: ts.Node): void => {
      if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer) constants.set(node.name.text, node.initializer);
      if ((ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node)) && node.name && ts.isIdentifier(node.name)) {
        const positions = node.parameters.flatMap((parameter, index) => (ts.isIdentifier(parameter.name) && parameter.name.text === 'action' ? [index] : []));
        if (positions.length > 0) actionParameters.set(node.name.text, positions);
      }
      ts.forEachChild(node, collect);
    };
    collect(file);

    const strings = (expression: ts.Expression, depth = 0): ts.StringLiteralLike[] => {
      if (depth > 5) return [];
      if (ts.isStringLiteralLike(expression)) return [expression];
      if (ts.isParenthesizedExpression(expression) || ts.isAsExpression(expression) || ts.isSatisfiesExpression(expression)) return strings(expression.expression, depth + 1);
      if (ts.isConditionalExpression(expression)) return [...strings(expression.whenTrue, depth + 1), ...strings(expression.whenFalse, depth + 1)];
      if (ts.isBinaryExpression(expression)) return [...strings(expression.left, depth + 1), ...strings(expression.right, depth + 1)];
      if (ts.isIdentifier(expression) && constants.has(expression.text)) return strings(constants.get(expression.text)!, depth + 1);
      return [];
    };
    const record = (expression: ts.Expression): void => {
      for (const literal of strings(expression)) {
        if (!ACTION_SHAPE.test(literal.text)) continue;
        const { line } = file.getLineAndCharacterOfPosition(literal.getStart());
        found.push({ action: literal.text, where: `${relative(SRC, path)}:${line + 1}` });
      }
    };
    const visit = (node: ts.Node): void => {
      if ((ts.isPropertyAssignment(node) || ts.isPropertyDeclaration(node)) && node.name.getText(file) === 'action' && node.initializer) record(node.initializer);
      if (ts.isCallExpression(node)) {
        const callee = ts.isPropertyAccessExpression(node.expression) ? node.expression.name.text : ts.isIdentifier(node.expression) ? node.expression.text : undefined;
        for (const index of (callee && actionParameters.get(callee)) || []) {
          const argument = node.arguments[index];
          if (argument) record(argument);
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(file);
  }
  return found;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

describe('regression: the audit catalogue holds every action the code writes', () => {
  test('every action written anywhere in src/ is in src/domain/audit-actions.ts', () => {
    const written = writtenActions();
    const distinct = new Set(written.map((entry) => entry.action));
    // The scan itself works: it finds the actions of sign-in, user management, keys and the
    // server, including those passed through helpers (`spendIpAllowance(origin, 'auth.totp.confirm')`).
    for (const action of ['auth.login', 'auth.sms_code_sent', 'auth.totp.confirm', 'user.enable', 'user.disable', 'tenant.update', 'import.jsonl', 'keys.encrypt-existing', 'webhook.rejected', 'system.stop']) {
      assert.ok(distinct.has(action), `the scan finds ${action}`);
    }
    assert.ok(distinct.size >= 30, `the scan finds the actions (${distinct.size})`);
    const missing = written.filter((entry) => !isAuditAction(entry.action));
    assert.deepEqual(missing, [], 'each action written in src/ is declared in src/domain/audit-actions.ts');
  });

  test('the docs describe every action of the catalogue', () => {
    const docs = ['audit.md', 'identity.md'].map((name) => readFileSync(join(import.meta.dirname, '../../docs', name), 'utf8')).join('\n');
    const undocumented = AUDIT_ACTION_NAMES.filter((action) => !docs.includes(`\`${action}\``));
    assert.deepEqual(undocumented, [], 'each action is named in docs/audit.md or docs/identity.md');
  });
});

await describeEachBackend('regression: GET /api/v1/audit?action= accepts every catalogued action, and nothing else', (backend) => {
  let h: IdentityHarness;
  let admin: string;
  before(async () => {
    h = await openIdentityHarness(backend);
    admin = (await h.signIn(await h.createUser({ role: 'admin' }))).accessToken;
    // One entry of every action, so each filter has something to find.
    for (const action of AUDIT_ACTION_NAMES) await appendAuditEvent(h.db, { actor: { type: 'system' }, action, outcome: 'success', details: { probe: true } });
  });
  after(() => h?.close());

  const filter = (action: string) => h.request({ method: 'GET', url: `/api/v1/audit?action=${encodeURIComponent(action)}&limit=500`, token: admin });

  test('each action of the catalogue (so each action the code writes) filters to entries of that action', async () => {
    for (const action of [...AUDIT_ACTION_NAMES, ...new Set(writtenActions().map((entry) => entry.action))]) {
      const response = await filter(action);
      assert.equal(response.statusCode, 200, `${action}: ${response.body}`);
      const entries = response.json().entries as Array<{ action: string; details: Record<string, unknown> }>;
      assert.ok(entries.length >= 1, `${action}: the probe entry is found`);
      assert.ok(entries.every((entry) => entry.action === action), `${action}: only that action`);
    }
  });

  test('an unknown, misspelt, oversized or repeated action → 400 naming the parameter; nothing is read', async () => {
    for (const action of ['auth.unknown', 'AUTH.LOGIN', 'auth.login ', 'auth_login', 'test.append', '', 'a.'.repeat(40), '__proto__', 'constructor', 'auth.login\u0000']) {
      const problem = assertProblem(await filter(action), 400, 'validation-failed');
      assert.deepEqual([problem.errors[0].in, problem.errors[0].field], ['querystring', 'action'], JSON.stringify(action));
    }
    const repeated = await h.request({ method: 'GET', url: '/api/v1/audit?action=auth.login&action=auth.lockout', token: admin });
    assertProblem(repeated, 400, 'validation-failed');
  });

  test('the filter is still behind audit:read', async () => {
    const employee = (await h.signIn(await h.createUser({ role: 'employee' }))).accessToken;
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/audit?action=auth.login', token: employee }), 403, 'forbidden');
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/audit?action=auth.login' }), 401, 'unauthenticated');
  });
});
