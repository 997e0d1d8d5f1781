/**
 * State changes the service makes only through a message. An update that sets opportunity `statecode` to Won (1) or
 * Lost (2) is refused with `CannotUseOpportunitySetStateMessage` (0x80100005); the `WinOpportunity` and
 * `LoseOpportunity` actions close it, each with an `opportunityclose` activity
 * (https://learn.microsoft.com/power-apps/developer/data-platform/org-service/web-service-error-codes,
 * https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/winopportunity).
 * Other tables with such rules (incident → CloseIncident, quote → WinQuote/CloseQuote, salesorder →
 * FulfillSalesOrder/CancelSalesOrder, invoice → ...) have no snapshot in the emulator and are not modelled.
 */
export interface ClosingState {
  /** The state's name as the service's message writes it. */
  readonly label: string;
  /** The action that reaches the state. */
  readonly action: string;
}

/** Per table, the states an update may not set. */
export const CLOSING_STATES: Readonly<Record<string, Readonly<Record<number, ClosingState>>>> = {
  opportunity: { 1: { label: 'won', action: 'WinOpportunity' }, 2: { label: 'lost', action: 'LoseOpportunity' } },
};

/** The unbound actions that close a record: its table, the state they set and the activity they take. */
export const CLOSE_ACTIONS: Readonly<
  Record<
    string,
    { readonly table: string; readonly state: number; readonly activity: string; readonly parameter: string }
  >
> = {
  WinOpportunity: { table: 'opportunity', state: 1, activity: 'opportunityclose', parameter: 'OpportunityClose' },
  LoseOpportunity: { table: 'opportunity', state: 2, activity: 'opportunityclose', parameter: 'OpportunityClose' },
};
