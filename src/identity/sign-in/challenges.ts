import { timingSafeEqual } from 'node:crypto';
import type { Db } from '../../store/connection.js';
import type { ChallengePurpose, LoginChallengesRepository } from '../../store/repositories/login-challenges.js';
import { IdentityError } from '../errors.js';
import { hashOpaqueToken, isOpaqueToken, issueOpaqueToken } from '../tokens/opaque-tokens.js';

/**
 * Login challenges: what a correct password earns when a second factor (or its enrollment)
 * must follow. The token lives five minutes, is spent by the request that completes the
 * sign-in, and is bound to the user, its purpose and the device (a User-Agent hash) of the
 * login attempt, so one stolen from a log cannot finish a sign-in from another client, nor
 * can an enrollment challenge stand in for a second factor.
 */
export const CHALLENGE_TTL_MS = 5 * 60 * 1000;
/** Wrong codes allowed per challenge; then it is spent and the password must be entered again. */
export const CHALLENGE_MAX_FAILURES = 5;

export type { ChallengePurpose };

export interface OpenChallenge {
  id: string;
  userId: string;
}

export class LoginChallenges {
  constructor(
    private readonly store: LoginChallengesRepository,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async issue(userId: string, purpose: ChallengePurpose, fingerprint: string): Promise<{ challengeToken: string; expiresAt: Date }> {
    const now = this.now();
    const { token, hash } = issueOpaqueToken('challenge');
    const expiresAt = new Date(now.getTime() + CHALLENGE_TTL_MS);
    await this.store.insert({ userId, tokenHash: hash, purpose, deviceFingerprint: fingerprint, expiresAt, createdAt: now });
    return { challengeToken: token, expiresAt };
  }

  /**
   * The open challenge behind a token, checked but not spent; throws the one
   * `invalid-challenge` answer for every reason, so a probe learns nothing.
   */
  async open(token: unknown, purpose: ChallengePurpose, fingerprint: string): Promise<OpenChallenge> {
    if (!isOpaqueToken('challenge', token)) throw invalidChallenge();
    const row = await this.store.findByTokenHash(hashOpaqueToken(token));
    if (!row || row.usedAt !== null || row.purpose !== purpose) throw invalidChallenge();
    if (this.now().getTime() >= row.expiresAt.getTime()) throw invalidChallenge();
    if (row.failedAttempts >= CHALLENGE_MAX_FAILURES) throw invalidChallenge();
    const expected = Buffer.from(row.deviceFingerprint, 'hex');
    const presented = Buffer.from(fingerprint, 'hex');
    if (expected.length !== presented.length || !timingSafeEqual(expected, presented)) throw invalidChallenge();
    return { id: row.id, userId: row.userId };
  }

  /** Spends (or claims) the challenge; false when another request got it first. */
  async spend(id: string, db?: Db): Promise<boolean> {
    return this.store.spend(id, this.now(), db);
  }

  /**
   * Ends every challenge of the user that could still be used, of both purposes. Called in the
   * transaction that enrolls, replaces or resets a second factor: a challenge earned with the
   * password before that change must not outlive it, or an old enrollment challenge (kept by
   * whoever else knew the password) would enroll a factor of theirs over the one just made.
   * The failure count is raised to the limit as well, so a request that had claimed one of
   * them and gives it back after a wrong code (`releaseAfterFailure`) cannot revive it.
   */
  async revokeAllOf(userId: string, db?: Db): Promise<number> {
    return this.store.revokeAllOf(userId, this.now(), CHALLENGE_MAX_FAILURES, db);
  }

  /**
   * Gives a claimed challenge back after a wrong code, counting the failure; after
   * `CHALLENGE_MAX_FAILURES` it stays unusable (`open` refuses it).
   */
  async releaseAfterFailure(id: string): Promise<void> {
    await this.store.releaseAfterFailure(id);
  }
}

export function invalidChallenge(): IdentityError {
  return new IdentityError('invalid-challenge', 'the challenge token is unknown, expired, already used, or was issued for another step or device; sign in again');
}
