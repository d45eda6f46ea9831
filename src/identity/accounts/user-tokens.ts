import { appendAuditEvent } from '../../store/audit-trail.js';
import type { Db } from '../../store/connection.js';
import type { UserTokenPurpose } from '../../store/repositories/users.js';
import { IdentityError } from '../errors.js';
import type { Identity } from '../identity.js';
import type { RequestOrigin } from '../request-origin.js';
import { hashOpaqueToken, isOpaqueToken, issueOpaqueToken, type OpaqueTokenKind } from '../tokens/opaque-tokens.js';

/**
 * Single-use tokens sent to a user out of band: the setup token an admin hands over (`cgs_`)
 * and the email-verification link of a signup (`cgv_`). Only their hash is stored; a token is
 * spent by a compare-and-set in the transaction that uses it.
 */
export class UserTokens {
  constructor(private readonly identity: Identity) {}

  /** A new token for the user, stored in the caller's transaction; the token is returned once. */
  async issue(userId: string, purpose: UserTokenPurpose, expiresAt: Date, tx: Db, createdAt: Date = new Date()): Promise<string> {
    const { token, hash } = issueOpaqueToken(KIND_OF[purpose]);
    await this.identity.parts.users.insertToken({ userId, purpose, tokenHash: hash, expiresAt, createdAt }, tx);
    return token;
  }

  /** The unspent, unexpired token behind `token`; every refusal is the one `invalid-token`, audited. */
  async open(token: unknown, purpose: UserTokenPurpose, origin: RequestOrigin): Promise<{ id: string; userId: string }> {
    const deny = async () => {
      await appendAuditEvent(this.identity.parts.db, { actor: { type: 'anonymous' }, action: purpose === 'setup' ? 'auth.password.set' : 'auth.email.verify', sourceIp: origin.ip, outcome: 'denied', details: { reason: 'invalid-token' } });
      return invalidUserToken();
    };
    if (!isOpaqueToken(KIND_OF[purpose], token)) throw await deny();
    const row = await this.identity.parts.users.findUnusedToken(hashOpaqueToken(token), purpose);
    if (!row || row.expiresAt.getTime() <= Date.now()) throw await deny();
    return { id: row.id, userId: row.userId };
  }

  /** Spends a token in the caller's transaction; false when another request spent it first. */
  spend(id: string, tx: Db): Promise<boolean> {
    return this.identity.parts.users.spendToken(id, tx);
  }
}

export function invalidUserToken(): IdentityError {
  return new IdentityError('invalid-token', 'the token is unknown, expired or already used');
}

const KIND_OF: Record<UserTokenPurpose, OpaqueTokenKind> = { setup: 'setup', 'verify-email': 'verifyEmail' };
