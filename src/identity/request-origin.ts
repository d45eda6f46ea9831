/** Where a request came from: for throttling, session records and the audit trail. */
export interface RequestOrigin {
  ip: string;
  userAgent: string | undefined;
}
