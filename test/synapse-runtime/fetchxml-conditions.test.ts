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

  it('reads an `in` condition with its <value> elements, and refuses one without values', () => {
    const q = parseFetchXml(
      '<fetch mapping="logical"><entity name="account"><attribute name="accountid" /><filter type="and"><condition attribute="accountid" operator="in"><value>0f8fad5b-d9cb-469f-a165-70867728950e</value><value>7c9e6679-7425-40de-944b-e07fc1f90ae7</value></condition></filter></entity></fetch>',
    );
    assert.deepEqual(q.conditions, [
      {
        attribute: 'accountid',
        operator: 'in',
        value: '0f8fad5b-d9cb-469f-a165-70867728950e',
        values: ['0f8fad5b-d9cb-469f-a165-70867728950e', '7c9e6679-7425-40de-944b-e07fc1f90ae7'],
      },
    ]);
    assert.throws(
      () =>
        parseFetchXml(
          '<fetch><entity name="account"><filter><condition attribute="accountid" operator="in"></condition></filter></entity></fetch>',
        ),
      /without <value> elements/,
    );
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
