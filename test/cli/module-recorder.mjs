// Module hooks for a child process: append every resolved module URL to the file named by FERRY_TEST_MODULES, so a
// test can tell which modules and packages a command loaded (`--import ./test/cli/register-module-recorder.mjs`).
import { appendFileSync } from 'node:fs';

export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  if (process.env.FERRY_TEST_MODULES) appendFileSync(process.env.FERRY_TEST_MODULES, `${result.url}\n`);
  return result;
}
