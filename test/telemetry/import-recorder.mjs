// Module hooks for a child process: append every resolved module URL that mentions OpenTelemetry to the file named
// by FERRY_TEST_IMPORTS, so a test can tell whether the telemetry SDK was loaded at all.
import { appendFileSync } from 'node:fs';

export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  if (process.env.FERRY_TEST_IMPORTS && /opentelemetry/i.test(result.url))
    appendFileSync(process.env.FERRY_TEST_IMPORTS, `${result.url}\n`);
  return result;
}
