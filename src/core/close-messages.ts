/**
 * Closed states Dataverse reaches only through a message: an update that sets opportunity `statecode` to Won or Lost
 * is refused (CannotUseOpportunitySetStateMessage, 0x80100005); `WinOpportunity` / `LoseOpportunity` close it with
 * an `opportunityclose` activity (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/winopportunity,
 * https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/loseopportunity).
 * Other tables with message-only states (incident, quote, salesorder, invoice) are not handled: see the README.
 *
 * One constant for both executors: the local writer (`connectors/dataverse/close-records.ts`) sends the messages,
 * the Synapse export (`export/synapse/close-activities.ts`) sends the same ones from Web activities.
 */
export const CLOSE_MESSAGES: Readonly<
  Record<
    string,
    { readonly actions: Readonly<Record<number, string>>; readonly activity: string; readonly parameter: string }
  >
> = {
  opportunity: {
    actions: { 1: 'WinOpportunity', 2: 'LoseOpportunity' },
    activity: 'opportunityclose',
    parameter: 'OpportunityClose',
  },
};

/** The close activity's `subject`, as both executors write it: `Won: <key>` / `Lost: <key>`. */
export function closeSubjectPrefix(action: string): string {
  return action === 'WinOpportunity' ? 'Won: ' : 'Lost: ';
}
