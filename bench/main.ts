/**
 * `npm run bench -- <name> [options]`: benchmarks that print figures (never run by the tests).
 * Each benchmark's last line is one JSON object with its figures.
 */
const BENCHES: Record<string, () => Promise<{ run: (argv: string[]) => Promise<void> }>> = {
  inbound: async () => ({ run: (await import('./inbound.js')).runInboundBench }),
  'inbound-e2e': async () => ({ run: (await import('./inbound.js')).runInboundE2eBench }),
  write: async () => ({ run: (await import('./write.js')).runWriteBench }),
  outbound: async () => ({ run: (await import('./outbound.js')).runOutboundBench }),
  queue: async () => ({ run: (await import('./queue.js')).runQueueBench }),
  store: async () => ({ run: (await import('./store.js')).runStoreBench }),
};

const [name, ...rest] = process.argv.slice(2);
const load = name ? BENCHES[name] : undefined;
if (!load) {
  process.stderr.write(`Usage: npm run bench -- <${Object.keys(BENCHES).join('|')}> [options]\n`);
  process.exit(2);
}
await (await load()).run(rest);
