import type { Command } from '../command.js';
import { withTelemetry } from '../with-telemetry.js';
import { backfillCommand } from './backfill.js';
import { demoCommand } from './demo.js';
import { deploySynapseCommand } from './deploy-synapse.js';
import { doctorCommand } from './doctor.js';
import { emulatorCommand } from './emulator.js';
import { emulatorServiceBusCommand } from './emulator-service-bus.js';
import { exportSynapseCommand } from './export-synapse.js';
import { initCommand } from './init.js';
import { listenCommand } from './listen.js';
import { metadataDiffCommand } from './metadata-diff.js';
import { metadataPullCommand } from './metadata-pull.js';
import { planCapacityCommand } from './plan-capacity.js';
import { queueDeadLettersCommand, queuePeekCommand, queueSendCommand } from './queue.js';
import { rejectsCommand } from './rejects.js';
import { replayCommand } from './replay.js';
import { reportCommand } from './report.js';
import { runCommand } from './run.js';
import { runRemoteCommand } from './run-remote.js';
import { runsCommand } from './runs.js';
import { scheduleCommand } from './schedule.js';
import { statusCommand } from './status.js';
import { synapseRunCommand } from './synapse-run.js';

/** Every CLI command, one line each (those that run pipelines report to Application Insights when configured). */
export const COMMANDS: readonly Command[] = [
  demoCommand,
  runCommand,
  runsCommand,
  rejectsCommand,
  scheduleCommand,
  statusCommand,
  doctorCommand,
  initCommand,
  backfillCommand,
  replayCommand,
  metadataPullCommand,
  metadataDiffCommand,
  emulatorCommand,
  emulatorServiceBusCommand,
  exportSynapseCommand,
  deploySynapseCommand,
  runRemoteCommand,
  synapseRunCommand,
  listenCommand,
  queueSendCommand,
  queuePeekCommand,
  queueDeadLettersCommand,
  reportCommand,
  planCapacityCommand,
].map(withTelemetry);
