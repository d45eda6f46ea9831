import { isIP } from 'node:net';
import { normalizeIP } from '@fastify/rate-limit';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { RedisConnection } from '../../store/redis.js';

export interface LoginThrottleOptions {
  /** Shared counters across instances; without it, each instance counts on its own. */
  redis?: RedisConnection | undefined;
  /** Prefix of every key, so instances or tests can keep apart on one Redis. Default 'cg'. */
  keyPrefix?: string;
  /** Consecutive failures for one account from one address that lock the pair. Default 10. */
  maxConsecutiveFailures?: number;
  /** How long a lock lasts. Default 900 s. */
  lockoutSeconds?: number;
  /**
   * How long a run of failures is remembered after its first failure when it never reaches
   * the limit. Default one day: a guess every few hours still adds up to a lock.
   */
  failureMemorySeconds?: number;
  /** Sign-in and second-factor attempts per minute from one address, any account. Default 30. */
  ipAttemptsPerMinute?: number;
}

export type LockStatus = { locked: false } | { locked: true; retryAfterSeconds: number };
export type FailureOutcome = { lockedNow: false } | { lockedNow: true; retryAfterSeconds: number };
export type IpAllowance = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/**
 * Brute-force throttling for sign-in and second-factor checks, in two independent limits:
 *
 * - a lock on (account, address) after 10 consecutive failures, the model of Auth0's default
 *   brute-force protection ("count per identifier and IP", 10 attempts:
 *   https://auth0.com/docs/secure/attack-protection/brute-force-protection). Keying on the
 *   pair means an attacker cannot lock a victim out from elsewhere; our lock expires after
 *   15 minutes where Auth0's waits for an unblock. A success clears the run.
 * - a per-address budget of attempts per minute across all accounts, against one address
 *   spraying many accounts (which the pair lock never sees).
 *
 * With Redis the counts are shared by every instance; when Redis is unreachable each limiter
 * falls back to an in-memory one (rate-limiter-flexible's `insuranceLimiter`), so an outage
 * weakens the limits to per-instance counting and never fails a sign-in. Counts made during
 * the outage stay in that instance's memory and are not merged back.
 *
 * Check, then record: two concurrent requests can both pass `check` before either records,
 * so a burst can overshoot the limit by the number of requests in flight, never by more.
 */
export class LoginThrottle {
  private readonly failures: RateLimiterAbstract;
  private readonly perIp: RateLimiterAbstract;
  private readonly failuresBeforeLock: number;
  private readonly failureMemorySeconds: number;
  private readonly lockoutSeconds: number;

  constructor(options: LoginThrottleOptions = {}) {
    const prefix = options.keyPrefix ?? 'cg';
    this.failuresBeforeLock = options.maxConsecutiveFailures ?? 10;
    if (!Number.isInteger(this.failuresBeforeLock) || this.failuresBeforeLock < 1) {
      throw new RangeError('maxConsecutiveFailures must be a positive integer');
    }
    // rate-limiter-flexible blocks on the consume that goes *past* `points`, so the limit of
    // failures still allowed is one less than the failure that locks.
    this.failureMemorySeconds = options.failureMemorySeconds ?? 24 * 60 * 60;
    this.lockoutSeconds = options.lockoutSeconds ?? 15 * 60;
    this.failures = createLimiter(options.redis, {
      keyPrefix: `${prefix}:login-failures`,
      points: this.failuresBeforeLock - 1,
      duration: this.failureMemorySeconds,
      blockDuration: this.lockoutSeconds,
    });
    this.perIp = createLimiter(options.redis, {
      keyPrefix: `${prefix}:login-ip`,
      points: options.ipAttemptsPerMinute ?? 30,
      duration: 60,
    });
  }

  /**
   * Whether this account may be tried from this address now. Call before checking a password.
   * `accountKey` is opaque (a hash or an id, never an email); `ip` is the client address.
   */
  async check(accountKey: string, ip: string): Promise<LockStatus> {
    const run = await this.failures.get(pairKey(accountKey, ip));
    if (run === null || run.consumedPoints < this.failuresBeforeLock) return { locked: false };
    return { locked: true, retryAfterSeconds: toRetryAfterSeconds(run.msBeforeNext) };
  }

  /**
   * Counts a wrong password or code. Call it for unknown accounts too (with the key the
   * account would have): a lock that only existing accounts can reach tells who exists.
   *
   * `lockedNow` is true only for the failure that starts a lock, so a lockout is audited or
   * notified once even when requests race; a failure recorded while already locked (one that
   * passed `check` just before the lock) reports false, and `check` still says locked.
   */
  async recordFailure(accountKey: string, ip: string): Promise<FailureOutcome> {
    try {
      await this.failures.consume(pairKey(accountKey, ip));
      return { lockedNow: false };
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      // The counter is atomic (INCRBY in Redis), so exactly one failure lands on the limit.
      if (rejection.consumedPoints !== this.failuresBeforeLock) return { lockedNow: false };
      return { lockedNow: true, retryAfterSeconds: toRetryAfterSeconds(rejection.msBeforeNext) };
    }
  }

  /** A correct password and factor end the run of failures for this account and address. */
  async recordSuccess(accountKey: string, ip: string): Promise<void> {
    await this.failures.delete(pairKey(accountKey, ip));
  }

  /**
   * Ends the runs of failures (and the locks they caused) of these accounts from these
   * addresses: an admin's unlock. The counters are keyed by account and address and cannot be
   * listed, so the caller names the addresses (the audit trail has them). Returns how many runs
   * there were.
   */
  async clear(accountKeys: readonly string[], ips: readonly string[]): Promise<number> {
    let cleared = 0;
    for (const accountKey of accountKeys) {
      for (const ip of ips) {
        if (isIP(ip) === 0) continue;
        if (await this.failures.delete(pairKey(accountKey, ip))) cleared += 1;
      }
    }
    return cleared;
  }

  /** How far back a run of failures can still count: its memory, or a lock it caused, whichever is longer. */
  get failureWindowSeconds(): number {
    return this.failureMemorySeconds + this.lockoutSeconds;
  }

  /** Spends one attempt from this address's per-minute budget; call once per attempt. */
  async consumeIp(ip: string): Promise<IpAllowance> {
    return consume(this.perIp, addressKey(ip));
  }
}

export interface SmsSendThrottleOptions {
  redis?: RedisConnection | undefined;
  keyPrefix?: string;
  /** Seconds a user waits between two codes of one purpose. Default 30; 0 turns this limit off (tests of the hourly one). */
  minIntervalSeconds?: number;
  /** Codes per user per hour, all purposes together. Default 5. */
  perHour?: number;
  /** Codes per phone number per hour, whichever users asked for them. Default 5. */
  perPhonePerHour?: number;
}

/**
 * How often one user may be sent an SMS code: one per 30 s for each purpose (so confirming a
 * new phone does not hold up the sign-in right after it), and five per hour in all; and how
 * often one phone may get one, whoever asks: five per hour. Without the per-phone limit, many
 * accounts (open signup makes them cheap) could each send a victim's number their own five
 * codes an hour (issue #13 item 4). Each text costs money and lands on someone's phone, so this
 * limits sending, not guessing (guesses are bounded per code). Shared through Redis like the
 * sign-in limits, with the same in-memory fallback.
 */
export class SmsSendThrottle {
  private readonly interval: RateLimiterAbstract | undefined;
  private readonly hourly: RateLimiterAbstract;
  private readonly perPhone: RateLimiterAbstract;

  constructor(options: SmsSendThrottleOptions = {}) {
    const prefix = options.keyPrefix ?? 'cg';
    const intervalSeconds = options.minIntervalSeconds ?? 30;
    this.interval = intervalSeconds > 0 ? createLimiter(options.redis, { keyPrefix: `${prefix}:sms-interval`, points: 1, duration: intervalSeconds }) : undefined;
    this.hourly = createLimiter(options.redis, { keyPrefix: `${prefix}:sms-hourly`, points: options.perHour ?? 5, duration: 60 * 60 });
    this.perPhone = createLimiter(options.redis, { keyPrefix: `${prefix}:sms-phone`, points: options.perPhonePerHour ?? 5, duration: 60 * 60 });
  }

  /**
   * Spends one send for `userKey` (an opaque key such as `u:<id>`), `purpose` and `phoneKey`
   * (a keyed hash of the number, `phoneRecipientKey`), or says how long to wait.
   */
  async consume(userKey: string, purpose: string, phoneKey: string): Promise<IpAllowance> {
    if (!ACCOUNT_KEY.test(userKey) || !ACCOUNT_KEY.test(purpose) || !ACCOUNT_KEY.test(phoneKey)) throw new TypeError('userKey, purpose and phoneKey must be opaque keys');
    if (this.interval) {
      const spaced = await consume(this.interval, `${userKey}:${purpose}`);
      if (!spaced.allowed) return spaced;
    }
    const hourly = await consume(this.hourly, userKey);
    if (!hourly.allowed) return hourly;
    return consume(this.perPhone, phoneKey);
  }
}

export interface EmailSendThrottleOptions {
  redis?: RedisConnection | undefined;
  keyPrefix?: string;
  /** Emails per recipient per hour, whatever they are for. Default 5. */
  perRecipientPerHour?: number;
}

/**
 * How often one address may be sent an email by us (verification links, setup links, notes to
 * an existing owner): five per hour, whoever asks and from wherever. Signup answers the same
 * whether or not it sends, so without this anyone could bomb an inbox through us, 110 emails a
 * minute in the review (issue #13 item 4). Keyed by `emailRecipientKey`, never the address.
 */
export class EmailSendThrottle {
  private readonly perRecipient: RateLimiterAbstract;

  constructor(options: EmailSendThrottleOptions = {}) {
    this.perRecipient = createLimiter(options.redis, { keyPrefix: `${options.keyPrefix ?? 'cg'}:email-recipient`, points: options.perRecipientPerHour ?? 5, duration: 60 * 60 });
  }

  /** Spends one email to `recipientKey` (an opaque key, never the address), or says how long to wait. */
  async consume(recipientKey: string): Promise<IpAllowance> {
    if (!ACCOUNT_KEY.test(recipientKey)) throw new TypeError('recipientKey must be an opaque key, never an email');
    return consume(this.perRecipient, recipientKey);
  }
}

/**
 * A limiter shared through Redis when there is one, with an in-memory insurance limiter that
 * answers while Redis is unreachable (per-instance counts), and in memory alone without Redis.
 */
export function createLimiter(
  redis: RedisConnection | undefined,
  options: { keyPrefix: string; points: number; duration: number; blockDuration?: number },
): RateLimiterAbstract {
  if (!redis) return new RateLimiterMemory(options);
  return new RateLimiterRedis({
    ...options,
    storeClient: redis.client,
    // Straight to the insurance limiter while disconnected, without a doomed command.
    rejectIfRedisNotReady: true,
    insuranceLimiter: new RateLimiterMemory(options),
  });
}

/**
 * rate-limiter-flexible rejects with a `RateLimiterRes` when the limit is reached and with an
 * `Error` when the store fails (and no insurance limiter could answer); only the first is a no.
 */
async function consume(limiter: RateLimiterAbstract, key: string): Promise<IpAllowance> {
  try {
    await limiter.consume(key);
    return { allowed: true };
  } catch (rejection) {
    if (rejection instanceof RateLimiterRes) return { allowed: false, retryAfterSeconds: toRetryAfterSeconds(rejection.msBeforeNext) };
    throw rejection;
  }
}

function toRetryAfterSeconds(msBeforeNext: number): number {
  return Math.max(1, Math.ceil(msBeforeNext / 1000));
}

/**
 * An opaque key from the caller (a blind-index hash, a user id, with a namespace such as
 * `e:` or `u:`), never an email: keys sit unsealed in Redis and in memory, and an email there
 * would be personal data outside the sealed tables. No '@', '.' or spaces gets that refused.
 */
const ACCOUNT_KEY = /^[A-Za-z0-9:_-]{1,160}$/;

function pairKey(accountKey: string, ip: string): string {
  if (!ACCOUNT_KEY.test(accountKey)) throw new TypeError('accountKey must be an opaque key (letters, digits, ":", "_", "-"), never an email');
  return `${accountKey}:${addressKey(ip)}`;
}

/**
 * An IPv6 client usually holds a whole /64, so counting per address would give it 2^64
 * budgets; @fastify/rate-limit's normalisation (a /64 prefix, IPv4-mapped to IPv4) keeps the
 * HTTP limit and this one counting the same unit.
 */
function addressKey(ip: string): string {
  if (isIP(ip) === 0) throw new TypeError('ip must be an IP address');
  return normalizeIP(ip);
}
