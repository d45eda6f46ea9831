import { appendAuditEvent } from '../store/audit-trail.js';
import type { Db } from '../store/connection.js';
import { JobQueue, type JobSummary, type QueueDepth } from '../store/job-queue.js';

export type { JobSummary, QueueDepth } from '../store/job-queue.js';

/**
 * The operator's hold on the job queue (`ciphergate jobs`): what waits, runs or died, and a dead
 * job put back. Jobs hold ids only, so none of it needs keys.
 */

/** Pending and running jobs (or the dead letters), oldest due first, with the queue's depth. */
export async function listQueue(db: Db, options: { dead: boolean; limit: number }): Promise<{ jobs: JobSummary[]; depth: QueueDepth }> {
  const queue = new JobQueue(db);
  const jobs = await queue.list(options);
  const depth = await queue.depth();
  return { jobs, depth };
}

/** Puts a dead job back with a fresh set of attempts, audited; false when no dead job has this id. */
export async function retryDeadJob(db: Db, id: string): Promise<boolean> {
  if (!(await new JobQueue(db).retryDead(id))) return false;
  await appendAuditEvent(db, { actor: { type: 'system' }, action: 'job.retry', target: { type: 'job', id }, outcome: 'success' });
  return true;
}
