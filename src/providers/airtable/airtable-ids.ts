/**
 * Airtable ids are a three-letter type prefix (`app`, `tbl`, `viw`, `fld`, `rec`, `ach`) and 14
 * letters or digits, as in every example of https://airtable.com/developers/web/api/introduction
 * (`app00000000000000`).
 */

/**
 * Refuses anything but a base id before it reaches a URL: the SDK pastes it in unencoded
 * (`/v0/${baseId}${path}`, node_modules/airtable/lib/base.js), so a crafted value could point the
 * tenant's token at another route.
 */
export function assertBaseId(baseId: string): void {
  if (!/^app[A-Za-z0-9]{14}$/.test(baseId)) throw new RangeError('baseId must be an Airtable base id (app…)');
}

/** Webhook filters take table or view ids, never names (https://airtable.com/developers/web/api/model/webhooks-specification). */
export function isTableOrViewId(value: string): boolean {
  return /^(tbl|viw)[A-Za-z0-9]{14}$/.test(value);
}
