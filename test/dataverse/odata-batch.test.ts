import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildBatch, parseBatchResponse } from '../../src/connectors/dataverse/odata-batch.js';

const crlf = (text: string) => text.replaceAll('\n', '\r\n');

// TV9 request, verbatim from the example of learn.microsoft.com/power-apps/developer/data-platform/webapi/execute-batch-operations-using-web-api (CRLF on the wire).
const TV9_REQUEST = crlf(`--batch_22975cad-7f57-410d-be15-6363209367ea
Content-Type: multipart/mixed; boundary="changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a"

--changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

POST /api/data/v9.2/tasks HTTP/1.1
Content-Type: application/json; type=entry

{ "subject": "Task 1 in batch", "regardingobjectid_account_task@odata.bind": "accounts(00000000-0000-0000-0000-000000000001)" }
--changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a--

--batch_22975cad-7f57-410d-be15-6363209367ea
Content-Type: application/http
Content-Transfer-Encoding: binary

GET /api/data/v9.2/accounts(00000000-0000-0000-0000-000000000001)/Account_Tasks?$select=subject HTTP/1.1


--batch_22975cad-7f57-410d-be15-6363209367ea--
`);

const TV9_RESPONSE = crlf(`--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f
Content-Type: multipart/mixed; boundary=changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15

--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: [org]/api/data/v9.2/tasks(e73ffc82-e292-ed11-aad1-000d3a9933c9)
OData-EntityId: [org]/api/data/v9.2/tasks(e73ffc82-e292-ed11-aad1-000d3a9933c9)


--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15--
--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 200 OK
Content-Type: application/json; odata.metadata=minimal; odata.streaming=true
OData-Version: 4.0

{ "@odata.context": "[org]/api/data/v9.2/$metadata#tasks(subject)", "value": [ { "@odata.etag": "W/\\"77181173\\"",
  "subject": "Task 1 in batch", "activityid": "e73ffc82-e292-ed11-aad1-000d3a9933c9" } ] }
--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f--
`);

// TV10 without continue-on-error: one error part.
const TV10_RESPONSE = crlf(`--batchresponse_156da4b8-cd2c-4862-a911-4aaab97c001a
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 400 Bad Request
REQ_ID: 5ecd1cb3-1730-4ffc-909c-d44c22270026
Content-Type: application/json; odata.metadata=minimal
OData-Version: 4.0

{"error":{"code":"0x80044331","message":"A validation error occurred.  The length of the 'subject' attribute of the 'task' entity exceeded the maximum allowed length of '200'."}}
--batchresponse_156da4b8-cd2c-4862-a911-4aaab97c001a--
`);

describe('$batch builder', () => {
  it('reproduces the TV9 request byte for byte given the same boundaries', () => {
    const built = buildBatch(
      [
        {
          changeSet: [
            {
              method: 'POST',
              url: 'tasks',
              contentId: '1',
              body: '{ "subject": "Task 1 in batch", "regardingobjectid_account_task@odata.bind": "accounts(00000000-0000-0000-0000-000000000001)" }',
            },
          ],
        },
        { method: 'GET', url: 'accounts(00000000-0000-0000-0000-000000000001)/Account_Tasks?$select=subject' },
      ],
      { boundary: 'batch_22975cad-7f57-410d-be15-6363209367ea' },
    );
    assert.equal(built.contentType, 'multipart/mixed; boundary="batch_22975cad-7f57-410d-be15-6363209367ea"');
    // Change-set boundaries are random; normalise them before comparing.
    const normalised = built.body.replace(/changeset_[0-9a-f-]{36}/g, 'changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a');
    assert.equal(normalised, TV9_REQUEST);
  });

  it('uses CRLF only and no bare LF', () => {
    const built = buildBatch([{ method: 'PATCH', url: "accounts(accountnumber='A1')", body: { name: 'x' } }]);
    assert.equal(/[^\r]\n/.test(built.body), false);
    assert.match(
      built.body,
      /PATCH \/api\/data\/v9\.2\/accounts\(accountnumber='A1'\) HTTP\/1\.1\r\nContent-Type: application\/json; type=entry\r\n\r\n\{"name":"x"\}\r\n/,
    );
  });

  it('refuses more than 1000 operations', () => {
    const ops = Array.from({ length: 1001 }, () => ({ method: 'GET' as const, url: 'WhoAmI' }));
    assert.throws(() => buildBatch(ops), /at most 1000/);
  });
});

describe('$batch response parser', () => {
  it('parses TV9: a change-set part and a GET part, in order', () => {
    const parts = parseBatchResponse(
      'multipart/mixed; boundary=batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f',
      TV9_RESPONSE,
    );
    assert.equal(parts.length, 2);
    assert.equal(parts[0]!.status, 204);
    assert.equal(parts[0]!.contentId, '1');
    assert.equal(parts[0]!.changeSet, 1);
    assert.equal(
      parts[0]!.headers['odata-entityid'],
      '[org]/api/data/v9.2/tasks(e73ffc82-e292-ed11-aad1-000d3a9933c9)',
    );
    assert.equal(parts[1]!.status, 200);
    assert.equal(parts[1]!.changeSet, undefined);
    const body = JSON.parse(parts[1]!.body) as { value: Array<{ subject: string }> };
    assert.equal(body.value[0]!.subject, 'Task 1 in batch');
  });

  it('parses TV10: the error part with its code and message', () => {
    const parts = parseBatchResponse(
      'multipart/mixed; boundary=batchresponse_156da4b8-cd2c-4862-a911-4aaab97c001a',
      TV10_RESPONSE,
    );
    assert.equal(parts.length, 1);
    assert.equal(parts[0]!.status, 400);
    assert.equal(parts[0]!.headers.req_id, '5ecd1cb3-1730-4ffc-909c-d44c22270026');
    assert.deepEqual(JSON.parse(parts[0]!.body), {
      error: {
        code: '0x80044331',
        message:
          "A validation error occurred.  The length of the 'subject' attribute of the 'task' entity exceeded the maximum allowed length of '200'.",
      },
    });
  });

  it('accepts LF-only responses and quoted boundaries', () => {
    const parts = parseBatchResponse(
      'multipart/mixed; boundary="batchresponse_156da4b8-cd2c-4862-a911-4aaab97c001a"',
      TV10_RESPONSE.replaceAll('\r\n', '\n'),
    );
    assert.equal(parts[0]!.status, 400);
  });

  it('refuses a content type without a boundary', () => {
    assert.throws(() => parseBatchResponse('application/json', '{}'), /without a boundary/);
  });
});
