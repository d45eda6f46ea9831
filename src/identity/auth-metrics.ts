import { Counter, Registry } from 'prom-client';

/**
 * Where in the sign-in flows a failure happened. `password-confirmation` is a signed-in user
 * re-entering the password to change a second factor or phone; `factor-confirmation` is the code
 * of the current factor asked before replacing it; `password-change` is the current password
 * given to `POST /auth/password`.
 */
export type AuthStage = 'password' | 'second-factor' | 'sms-code' | 'enrollment' | 'password-confirmation' | 'factor-confirmation' | 'password-change';

/** Audit actions of the sign-in flows, and the stage each stands for. */
const STAGE_OF_ACTION: Record<string, AuthStage> = {
  'auth.login': 'password',
  'auth.second-factor': 'second-factor',
  'auth.sms_code_sent': 'sms-code',
  'auth.totp.enroll': 'enrollment',
  'auth.totp.confirm': 'enrollment',
};

/** Reasons are our own constants; anything else (a future change passing text through) collapses to one series. */
const REASON = /^[a-z][a-z-]{0,39}$/;

/**
 * Failed sign-in steps and lockouts, on a registry each Identity owns. Labels are the stage and
 * a fixed reason word: never an email, a user id or an address, so nobody can mint series by
 * trying names.
 */
export class AuthMetrics {
  readonly registry = new Registry();

  readonly failures = new Counter({
    name: 'ciphergate_login_failures_total',
    help: 'Failed or refused sign-in steps, by stage and reason',
    labelNames: ['stage', 'reason'] as const,
    registers: [this.registry],
  });

  readonly lockouts = new Counter({
    name: 'ciphergate_login_lockouts_total',
    help: 'Accounts locked after too many failures, by the stage of the failure that locked them',
    labelNames: ['stage'] as const,
    registers: [this.registry],
  });

  /** Counts a failure at `stage`, or at the stage of an audit action; other actions are not sign-in steps. */
  recordFailure(stageOrAction: AuthStage | string, reason: unknown): void {
    const stage = STAGE_OF_ACTION[stageOrAction] ?? (isStage(stageOrAction) ? stageOrAction : undefined);
    if (!stage) return;
    this.failures.inc({ stage, reason: typeof reason === 'string' && REASON.test(reason) ? reason : 'other' });
  }

  recordLockout(stageOrAction: AuthStage | string): void {
    const stage = STAGE_OF_ACTION[stageOrAction] ?? (isStage(stageOrAction) ? stageOrAction : 'other');
    this.lockouts.inc({ stage });
  }
}

const STAGES: ReadonlySet<string> = new Set<AuthStage>(['password', 'second-factor', 'sms-code', 'enrollment', 'password-confirmation', 'factor-confirmation', 'password-change']);

function isStage(value: string): value is AuthStage {
  return STAGES.has(value);
}
