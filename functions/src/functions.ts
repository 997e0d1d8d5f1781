import azureFunctions, { type InvocationContext } from '@azure/functions';
import {
  type FunctionServices,
  handleInboundInvocation,
  handleOutboundInvocation,
  servicesFromEnv,
} from './queue-invocations.js';

// The package is CommonJS; Node's ESM interop does not see every named export.
const { app } = azureFunctions;

let services: FunctionServices | undefined;
const get = () => {
  services ??= servicesFromEnv();
  return services;
};

// Inbound: legacy change messages (session = the record's id) → the inbound pipeline's mapping → Dataverse.
app.serviceBusQueue('ferryInbound', {
  connection: 'ServiceBusConnection',
  queueName: '%FERRY_INBOUND_QUEUE%',
  isSessionsEnabled: true,
  cardinality: 'many',
  handler: async (messages: unknown, context: InvocationContext) => {
    await handleInboundInvocation(messages, context, get());
  },
});

// Outbound: Dataverse change messages (session = the record's GUID) → the target system's API.
app.serviceBusQueue('ferryOutbound', {
  connection: 'ServiceBusConnection',
  queueName: '%FERRY_OUTBOUND_QUEUE%',
  isSessionsEnabled: true,
  cardinality: 'many',
  handler: async (messages: unknown, context: InvocationContext) => {
    await handleOutboundInvocation(messages, context, get());
  },
});
