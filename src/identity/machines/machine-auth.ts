import { isUuid } from '../../domain/ids.js';
import { appendAuditEvent, type AuditEventInput } from '../../store/audit-trail.js';
import type { Db } from '../../store/connection.js';
import { tenantExists } from '../../store/repositories/tenants.js';
import { forbidden, invalidInput, notFound } from '../errors.js';
import type { Identity } from '../identity.js';
import { API_KEY_SCOPES, isApiKeyScope, keyScopesBeyondRole, roleHasPermission, type ApiKeyScope, type Role } from '../permissions.js';
import { auditActorOf, confinedTenant, type Principal } from '../principal.js';
import type { RequestOrigin } from '../request-origin.js';
import type { ApiKeyRecord } from './api-keys.js';

/** The statuses whose holder's API keys live on: a locked user's keys stay (see revokeKeysBeyondTheirCreators). */
const KEY_KEEPING_STATUSES: readonly string[] = ['active', 'locked'];

/**
 * Why a user's keys are being re-checked: their role changed (to `role`), or they were
 * disabled or deleted. Written to the audit trail as the `reason` of each revocation.
 */
export type CreatorChange = { reason: 'creator-role-changed'; role: Role } | { reason: 'creator-disabled' | 'creator-deleted' };

/** What `revokeKeyAsOperator` did. */
export type OperatorRevocation = { kind: 'revoked'; endedSessions: number } | { kind: 'unknown' } | { kind: 'revoked-already' };

/**
 * Machines' credentials: API keys created, listed and revoked, and kept within what their
 * creator may hold. The OAuth endpoints built on them are oauth.ts.
 */
export class MachineAuth {
  constructor(private readonly identity: Identity) {}

  private get parts() {
    return this.identity.parts;
  }

  /**
   * Creates a key. `actor` null means the CLI (the operator at the console of the machine):
   * such a key has no creator and outlives every user. A user may give a key only scopes
   * their own role holds (a 403 names the others), and owns the key from then on: it dies
   * when they lose the permission that allowed it (`revokeKeysOfCreator`). Machines make no
   * keys. A confined principal (a client user) could only make keys for its own tenant, but
   * no such principal holds `api-keys:write` in the matrix today; the check stays as a guard.
   */
  async createKey(actor: Principal | null, input: { name: string; tenantId: string | null; scopes: string[]; expiresAt?: Date | null }, origin?: RequestOrigin): Promise<{ record: ApiKeyRecord; key: string }> {
    const scopes = validScopes(input.scopes);
    if (actor) await this.assertMayGiveScopes(actor, scopes, input.tenantId, origin);
    if (scopes.some((scope) => scope !== 'metrics:read') && !input.tenantId) {
      throw invalidInput('an API key with data scopes must be bound to a tenant');
    }
    if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) throw invalidInput('expiresAt must be in the future');
    if (actor) {
      const confined = confinedTenant(actor);
      if (confined !== null && confined !== input.tenantId) throw forbidden('keys can only be made for your own tenant');
    }
    const { db, apiKeys, users } = this.parts;
    const creatorId = actor?.kind === 'user' ? actor.userId : null;
    return db.transaction(async (tx) => {
      if (creatorId !== null) {
        // The role in the caller's token was checked before this transaction. Read it again
        // under the user's row lock: a demotion that committed meanwhile is seen here, and one
        // still running waits for this key to commit and then revokes it with the others.
        const creator = await users.getForUpdate(creatorId, tx);
        if (!creator || creator.status !== 'active' || keyScopesBeyondRole(creator.role, scopes).length > 0) throw forbidden('your role no longer allows this key');
      }
      const created = await apiKeys.create({ ...input, scopes, createdBy: creatorId }, tx);
      await appendAuditEvent(tx, {
        actor: actor ? auditActorOf(actor) : { type: 'system' },
        action: 'api-key.create',
        target: { type: 'api_key', id: created.record.id },
        tenantId: input.tenantId,
        sourceIp: origin?.ip ?? null,
        outcome: 'success',
        details: { scopes: scopes.join(' '), expires: input.expiresAt ? input.expiresAt.toISOString() : null },
      });
      return created;
    });
  }

  /**
   * Revokes the keys `creatorId` made that they could no longer make after a change (all of
   * them once disabled or deleted; after a role change, those with a scope the new role
   * lacks), with every client-credentials token issued from them: the sessions are announced
   * on the revocation bus, so every instance refuses them at once. One `api-key.revoke` event
   * per key, by the actor of the change. Runs inside the transaction of the change, after it
   * took the user's row lock (see `createKey`). Returns how many keys it revoked.
   */
  async revokeKeysOfCreator(actor: Principal, creatorId: string, change: CreatorChange, tx: Db, origin: RequestOrigin): Promise<number> {
    const keep = change.reason === 'creator-role-changed' ? (key: Pick<ApiKeyRecord, 'scopes'>) => keyScopesBeyondRole(change.role, key.scopes).length === 0 : undefined;
    const revoked = await this.parts.apiKeys.revokeCreatedBy(creatorId, tx, keep);
    for (const key of revoked) await this.endRevokedKey(key, { reason: change.reason, creator: creatorId }, auditActorOf(actor), origin.ip, tx);
    return revoked.length;
  }

  /**
   * Revokes every live key its creator could not make today, the way a change of that creator
   * would have (`revokeKeysOfCreator`). Keys made before keys followed their creator's role
   * outlived demotions, and managers could give `metrics:read`; `serve` runs this at start so
   * an upgrade ends them. Idempotent, safe on several instances at once (each key is revoked,
   * and audited, by one of them); actor `system`. Returns how many keys it revoked.
   */
  async revokeKeysBeyondTheirCreators(): Promise<number> {
    const { db, apiKeys } = this.parts;
    let revoked = 0;
    for (const key of await apiKeys.liveWithCreators()) {
      // A locked creator keeps their keys (docs/identity.md, "Locking a user"): a lock holds the person, not the integrations.
      const reason = !key.creator ? 'creator-deleted' : !KEY_KEEPING_STATUSES.includes(key.creator.status) ? 'creator-disabled' : keyScopesBeyondRole(key.creator.role, key.scopes).length > 0 ? 'creator-role-changed' : undefined;
      if (reason === undefined) continue;
      await db.transaction(async (tx) => {
        if (!(await apiKeys.revoke(key.id, tx))) return;
        await this.endRevokedKey(key, { reason, creator: key.createdBy, via: 'start-up-check' }, { type: 'system' }, null, tx);
        revoked += 1;
      });
    }
    return revoked;
  }

  /** Ends the tokens of a key just revoked (announced on the revocation bus) and audits the revocation. */
  private async endRevokedKey(key: Pick<ApiKeyRecord, 'id' | 'tenantId'>, details: { reason: CreatorChange['reason']; creator: string; via?: string }, actor: AuditEventInput['actor'], sourceIp: string | null, tx: Db): Promise<void> {
    const ended = await this.parts.sessions.revokeForApiKeys([key.id], 'api-key-revoked', tx);
    await appendAuditEvent(tx, { actor, action: 'api-key.revoke', target: { type: 'api_key', id: key.id }, tenantId: key.tenantId, sourceIp, outcome: 'success', details: { ...details, endedSessions: ended.length } });
  }

  /** Revokes a key and every token issued from it, at once. */
  async revokeKey(actor: Principal, id: string, origin: RequestOrigin): Promise<void> {
    const { apiKeys, sessions, db } = this.parts;
    const record = isUuid(id) ? await apiKeys.get(id) : undefined;
    const confined = confinedTenant(actor);
    if (!record || (confined !== null && confined !== record.tenantId)) throw notFound('no such API key');
    await db.transaction(async (tx) => {
      if (!(await apiKeys.revoke(id, tx))) throw notFound('no such API key (or revoked already)');
      await sessions.revokeForApiKeys([id], 'api-key-revoked', tx);
      await appendAuditEvent(tx, { actor: auditActorOf(actor), action: 'api-key.revoke', target: { type: 'api_key', id }, tenantId: record.tenantId, sourceIp: origin.ip, outcome: 'success', details: {} });
    });
  }

  /**
   * Nobody gives a key a scope they lack themselves: a manager cannot mint `metrics:read`.
   * The refusal names the scopes and is audited (an attempt to climb, like giving a role one
   * may not give); nothing else is written.
   */
  private async assertMayGiveScopes(actor: Principal, scopes: ApiKeyScope[], tenantId: string | null, origin: RequestOrigin | undefined): Promise<void> {
    if (actor.kind === 'machine') throw forbidden('machines do not make API keys');
    const beyond = keyScopesBeyondRole(actor.role, scopes);
    if (beyond.length === 0) return;
    await appendAuditEvent(this.parts.db, {
      actor: auditActorOf(actor),
      action: 'api-key.create',
      tenantId,
      sourceIp: origin?.ip ?? null,
      outcome: 'denied',
      details: { reason: 'scope-not-held', scopes: beyond.join(' ') },
    });
    const detail = roleHasPermission(actor.role, 'api-keys:write')
      ? `a ${actor.role} may not give an API key ${beyond.length === 1 ? 'the scope' : 'the scopes'} ${beyond.map((scope) => `"${scope}"`).join(', ')}: a key holds only what its creator holds`
      : `a ${actor.role} may not make API keys`;
    throw forbidden(detail, { scopes: beyond });
  }

  /** The keys `actor` may see, newest first: a confined principal sees its tenant's only. */
  async listKeys(actor: Principal): Promise<ApiKeyRecord[]> {
    const confined = confinedTenant(actor);
    if (confined === 'none') return [];
    return this.parts.apiKeys.list(confined === null ? {} : { tenantId: confined });
  }

  /** Whether `tenantId` names a tenant, for a request that binds a key to one. */
  tenantExists(tenantId: string): Promise<boolean> {
    return tenantExists(this.parts.db, tenantId);
  }

  /** Revokes a key from the command line, with every token issued from it; the operator may revoke any key. */
  async revokeKeyAsOperator(id: string): Promise<OperatorRevocation> {
    const { db, apiKeys, sessions } = this.parts;
    const record = await apiKeys.get(id);
    if (!record) return { kind: 'unknown' };
    return db.transaction(async (tx): Promise<OperatorRevocation> => {
      if (!(await apiKeys.revoke(id, tx))) return { kind: 'revoked-already' };
      const ended = await sessions.revokeForApiKeys([id], 'api-key-revoked', tx);
      await appendAuditEvent(tx, {
        actor: { type: 'system', id: 'cli' },
        action: 'api-key.revoke',
        target: { type: 'api_key', id },
        tenantId: record.tenantId,
        outcome: 'success',
        details: { via: 'cli', endedSessions: ended.length },
      });
      return { kind: 'revoked', endedSessions: ended.length };
    });
  }
}

function validScopes(scopes: string[]): ApiKeyScope[] {
  if (scopes.length === 0) throw invalidInput('an API key needs at least one scope');
  const unknown = scopes.filter((scope) => !isApiKeyScope(scope));
  if (unknown.length > 0) throw invalidInput(`unknown scope "${unknown[0]}"; allowed: ${API_KEY_SCOPES.join(', ')}`);
  return scopes as ApiKeyScope[];
}
