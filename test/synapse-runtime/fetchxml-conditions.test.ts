/**
 * The runtime's Dataverse source reads one `and` filter of FetchXML comparisons (what the incremental key-map copies
 * send) and refuses what it does not implement, by name, never ignoring a filter.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFetchXml } from '../../src/export/synapse/runtime/connectors/dataverse-http.js';

describe('FetchXML of the Dataverse source', () => {
  it('reads entity, attributes and the filter conditions', () => {
    const q = parseFetchXml(
      '<fetch mapping="logical"><entity name="account"><attribute name="accountid" /><attribute name="accountnumber" /><filter type="and"><condition attribute="modifiedon" operator="ge" value="2026-01-01T00:00:00Z" /><condition attribute="name" operator="eq" value="A &amp; B" /></filter></entity></fetch>',
    );
    assert.deepEqual(q, {
      entity: 'account',
      attributes: ['accountid', 'accountnumber'],
      conditions: [
        { attribute: 'modifiedon', operator: 'ge', value: '2026-01-01T00:00:00Z' },
        { attribute: 'name', operator: 'eq', value: 'A & B' },
      ],
    });
  });

  it('refuses an operator, an `or` filter or nested filters it does not implement', () => {
    const entity = (filter: string) =>
      `<fetch><entity name="account"><attribute name="name" />${filter}</entity></fetch>`;
    assert.throws(
      () => parseFetchXml(entity('<filter><condition attribute="name" operator="like" value="A%" /></filter>')),
      /condition .* is not implemented by the local runtime/,
    );
    assert.throws(
      () => parseFetchXml(entity('<filter type="or"><condition attribute="name" operator="eq" value="A" /></filter>')),
      /or` filters is not implemented/,
    );
    assert.throws(
      () =>
        parseFetchXml(
          entity('<filter><filter><condition attribute="name" operator="eq" value="A" /></filter></filter>'),
        ),
      /nested/,
    );
  });
});
