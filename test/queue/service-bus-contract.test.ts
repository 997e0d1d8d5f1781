import { ServiceBusTransport } from '../../src/connectors/queue/service-bus-transport.js';
import type { QueueTransport } from '../../src/core/queue-transport.js';
import { startServiceBusEmulator } from '../../src/emulator/service-bus/service-bus-emulator.js';
import { runTransportContract } from './transport-contract.js';

// The contract the embedded queue is held to, run against the Service Bus transport and the real SDK over AMQP:
// one emulator per case, with a queue of the settings the case asks for.
let n = 0;
runTransportContract('service-bus (@azure/service-bus against the AMQP emulator)', async (settings) => {
  n += 1;
  const queue = `contract-${n}`;
  const emulator = await startServiceBusEmulator({
    queues: [{ name: queue, requiresSession: true, ...settings }],
  });
  // The contract renews locks explicitly (as the listener does) and checks that an unrenewed lock expires.
  const open = () =>
    new ServiceBusTransport({ connectionString: emulator.connectionString, acceptTimeoutMs: 3_000, renewLocks: false });
  const transport = open();
  const others: QueueTransport[] = [];
  return {
    transport,
    queue,
    openSecond: async () => {
      const second = open();
      others.push(second);
      return second;
    },
    cleanup: async () => {
      for (const other of others) await other.close();
      await transport.close();
      await emulator.close();
    },
  };
});
