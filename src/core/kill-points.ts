/**
 * Named places where the crash harness may kill the process (`FERRY_KILL_AT=<name>` or `<name>#<n>` for the n-th
 * time the place is reached). Unset in normal use, so a kill point costs one string comparison.
 */
const target = parseTarget(process.env.FERRY_KILL_AT);
const hits = new Map<string, number>();

function parseTarget(text: string | undefined): { name: string; nth: number } | undefined {
  if (!text) return undefined;
  const [name, nth] = text.split('#');
  return { name: name!, nth: nth ? Number(nth) : 1 };
}

/** Kills this process with SIGKILL when the harness asked for this point; otherwise does nothing. */
export function killPoint(name: string): void {
  if (!target || target.name !== name) return;
  const n = (hits.get(name) ?? 0) + 1;
  hits.set(name, n);
  if (n === target.nth) {
    process.stderr.write(`FERRY_KILL_AT: killing at ${name}#${n}\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}
