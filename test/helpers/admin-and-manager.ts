import type { Backend } from './database.js';
import { openIdentityHarness, type IdentityHarness, type SignedSession, type TestUser } from './identity.js';

/** An identity harness with a signed-in admin and a signed-in manager: the cast of the user-administration suites. */
export interface AdminAndManager {
  h: IdentityHarness;
  admin: TestUser;
  adminSession: SignedSession;
  manager: TestUser;
  managerSession: SignedSession;
}

export async function openAdminAndManager(backend: Backend): Promise<AdminAndManager> {
  const h = await openIdentityHarness(backend);
  const admin = await h.createUser({ role: 'admin' });
  const adminSession = await h.signIn(admin);
  const manager = await h.createUser({ role: 'manager' });
  const managerSession = await h.signIn(manager);
  return { h, admin, adminSession, manager, managerSession };
}
