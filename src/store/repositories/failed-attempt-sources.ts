import { and, eq, gte, inArray, isNotNull } from 'drizzle-orm';
import { AUDIT_ACTIONS } from '../../domain/audit-actions.js';
import type { Db } from '../connection.js';
import { auditEvents } from '../schema.js';

/**
 * The addresses a user's failed sign-in steps came from since `since`, read from the audit
 * trail, which records every failure that the sign-in throttle counts (a wrong password or
 * code, a wrong current password or factor), each with its source address. The throttle keys
 * its failure runs by account and address and cannot list them; unlocking a user clears the
 * runs of these addresses (src/identity/accounts/account-locks.ts).
 */
export async function addressesOfFailedAttempts(db: Db, userId: string, since: Date): Promise<string[]> {
  const rows = await db
    .selectDistinct({ ip: auditEvents.sourceIp })
    .from(auditEvents)
    .where(
      and(
        // Every step the throttle counts is audited under an auth.* action; the action index narrows the scan to them.
        inArray(auditEvents.action, SIGN_IN_ACTIONS),
        eq(auditEvents.actorType, 'user'),
        eq(auditEvents.actorId, userId),
        eq(auditEvents.outcome, 'failure'),
        gte(auditEvents.occurredAt, since),
        isNotNull(auditEvents.sourceIp),
      ),
    );
  return rows.map((row) => row.ip).filter((ip): ip is string => ip !== null);
}

const SIGN_IN_ACTIONS = Object.keys(AUDIT_ACTIONS).filter((action) => action.startsWith('auth.'));
