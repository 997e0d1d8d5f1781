import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { EmbeddedQueueTransport } from '../../src/connectors/queue/embedded-queue-transport.js';
import { runTransportContract } from './transport-contract.js';

let n = 0;
runTransportContract('embedded (SQLite in the state store)', async (settings) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ferry-queue-'));
  const file = path.join(dir, 'ferry.sqlite');
  // Each client its own connection to the file, as separate processes would have.
  const open = () => new EmbeddedQueueTransport({ file, ...settings });
  const transport = open();
  n += 1;
  return {
    transport,
    queue: `contract-${n}`,
    openSecond: async () => open(),
    cleanup: async () => {
      await transport.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
});
