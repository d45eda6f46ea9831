// CI's dependency audit: `npm audit --omit=dev` must show no high or critical advisory for what
// ships. Some registries (the one these machines reach among them) refuse npm's bulk advisory
// endpoint with 405; then there is nothing to judge, so the step says so in one line and passes
// rather than failing every run for a reason that is not in the code. A real finding fails, and
// so does output that is not an audit report at all (fail closed).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const FAILING = new Set(['high', 'critical']);

interface AuditReport {
  message?: string;
  statusCode?: number;
  error?: { summary?: string };
  metadata?: { vulnerabilities?: Record<string, number> };
  vulnerabilities?: Record<string, { severity: string }>;
}

/** What to do with the output of `npm audit --json`. Exported for test/ops/audit-script.test.ts. */
export function judgeAudit(stdout: string): { ok: boolean; line: string } {
  let report: AuditReport;
  try {
    report = JSON.parse(stdout) as AuditReport;
  } catch {
    return { ok: false, line: `npm audit: no JSON report to judge (${stdout.trim().slice(0, 120) || 'empty output'})` };
  }
  const counts = report.metadata?.vulnerabilities;
  if (counts === undefined) {
    // npm's shape when the endpoint itself failed: { message, statusCode, ... } or { error: { summary } }.
    const reason = report.message ?? report.error?.summary;
    if (reason === undefined) return { ok: false, line: 'npm audit: a report without vulnerability counts or a reason' };
    return { ok: true, line: `npm audit: skipped, the registry refused the audit request (${reason.split('\n')[0]})` };
  }
  const failing = Object.entries(report.vulnerabilities ?? {})
    .filter(([, entry]) => FAILING.has(entry.severity))
    .map(([name, entry]) => `${name} (${entry.severity})`);
  if (failing.length > 0) return { ok: false, line: `npm audit: high or critical advisories in runtime dependencies: ${failing.join(', ')}` };
  const summary = Object.entries(counts)
    .filter(([severity, count]) => severity !== 'total' && count > 0)
    .map(([severity, count]) => `${count} ${severity}`)
    .join(', ');
  return { ok: true, line: `npm audit: no high or critical advisories in runtime dependencies (findings: ${summary || 'none'})` };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const audit = spawnSync('npm', ['audit', '--omit=dev', '--json'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const verdict = judgeAudit(audit.stdout ?? '');
  console.log(verdict.line);
  // On a failure, the readable report too, so the log says what to upgrade.
  if (!verdict.ok) spawnSync('npm', ['audit', '--omit=dev', '--audit-level=high'], { stdio: 'inherit' });
  process.exit(verdict.ok ? 0 : 1);
}
