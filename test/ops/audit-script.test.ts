import assert from 'node:assert/strict';
import { test } from 'node:test';
import { judgeAudit } from '../../scripts/audit-dependencies.js';

/**
 * The CI audit step's judgement (scripts/audit-dependencies.ts), on report shapes npm 10/11
 * prints with --json: a refused endpoint passes with its reason, a high or critical advisory
 * fails naming the package, anything that is not a report fails closed.
 */
function report(vulnerabilities: Record<string, { severity: string }>): string {
  const counts: Record<string, number> = { info: 0, low: 0, moderate: 0, high: 0, critical: 0, total: 0 };
  for (const { severity } of Object.values(vulnerabilities)) {
    counts[severity] = (counts[severity] ?? 0) + 1;
    counts.total = (counts.total ?? 0) + 1;
  }
  return JSON.stringify({ auditReportVersion: 2, vulnerabilities, metadata: { vulnerabilities: counts } });
}

test('a high or a critical advisory fails and names the package', () => {
  for (const severity of ['high', 'critical']) {
    const verdict = judgeAudit(report({ 'some-lib': { severity }, other: { severity: 'low' } }));
    assert.equal(verdict.ok, false);
    assert.match(verdict.line, new RegExp(`some-lib \\(${severity}\\)`));
    assert.doesNotMatch(verdict.line, /other/);
  }
});

test('low and moderate findings pass and are counted', () => {
  const verdict = judgeAudit(report({ a: { severity: 'moderate' }, b: { severity: 'low' } }));
  assert.equal(verdict.ok, true);
  assert.match(verdict.line, /1 low, 1 moderate/);
  assert.match(judgeAudit(report({})).line, /findings: none/);
});

test('a registry that refuses the audit endpoint (405) passes with a one-line reason', () => {
  const refused = JSON.stringify({ message: '405 Method Not Allowed - POST https://registry.example/-/npm/v1/security/advisories/bulk', method: 'POST', statusCode: 405, body: '' });
  const verdict = judgeAudit(refused);
  assert.equal(verdict.ok, true);
  assert.match(verdict.line, /^npm audit: skipped, the registry refused the audit request \(405 Method Not Allowed/);
  assert.equal(verdict.line.split('\n').length, 1);
  assert.equal(judgeAudit(JSON.stringify({ error: { code: 'ENOAUDIT', summary: 'Your configured registry does not support audit requests.' } })).ok, true);
});

test('output that is not an audit report fails closed', () => {
  assert.equal(judgeAudit('').ok, false);
  assert.equal(judgeAudit('npm ERR! something broke').ok, false);
  assert.equal(judgeAudit(JSON.stringify({ unexpected: true })).ok, false);
});
