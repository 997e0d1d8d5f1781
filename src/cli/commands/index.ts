import type { Command } from '../command.js';
import { withTelemetry } from '../with-telemetry.js';

/**
 * A command as `ferry --help` lists it. Its module (and everything it imports: DuckDB, the Azure SDKs, ajv…) is
 * imported only when the command runs or shows its own help, so `ferry status` starts without them. `name`,
 * `summary` and the arguments of `usage` repeat the command's own; `test/cli/lazy-commands.test.ts` holds them equal.
 */
export interface CommandEntry {
  readonly name: string;
  readonly summary: string;
  /** The command's usage up to its first option: its name and positional arguments (`run <pipeline>`). */
  readonly usage: string;
  load(): Promise<Command>;
}

/** Every CLI command, one entry each: its name, its one-line summary and where its module is. */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: 'demo',
    usage: 'demo',
    summary: 'run all demo pipelines on the bundled fixtures against the emulator',
    load: async () => (await import('./demo.js')).demoCommand,
  },
  {
    name: 'run',
    usage: 'run <pipeline>',
    summary: 'run a pipeline once on its next window',
    load: async () => (await import('./run.js')).runCommand,
  },
  {
    name: 'runs',
    usage: 'runs',
    summary: 'list recent runs: start, duration, rows, rows/s, 429s (empty scheduled runs hidden unless --all)',
    load: async () => (await import('./runs.js')).runsCommand,
  },
  {
    name: 'rejects',
    usage: 'rejects',
    summary: 'show the rejected rows of a run (or the open rejects of a pipeline)',
    load: async () => (await import('./rejects.js')).rejectsCommand,
  },
  {
    name: 'schedule',
    usage: 'schedule',
    summary: 'run pipelines every 15 minutes (or --every) until stopped',
    load: async () => (await import('./schedule.js')).scheduleCommand,
  },
  {
    name: 'status',
    usage: 'status',
    summary:
      "show whether a scheduler runs, and each pipeline's last run, next run, cursor, lease holder and open rejects",
    load: async () => (await import('./status.js')).statusCommand,
  },
  {
    name: 'doctor',
    usage: 'doctor',
    summary: 'check a target before the first run: config, Key Vault, identities, Dataverse, lake, state, metadata',
    load: async () => (await import('./doctor.js')).doctorCommand,
  },
  {
    name: 'init',
    usage: 'init [dir]',
    summary: 'scaffold a ferry project (config with targets, a pipeline, metadata, sample data, a test)',
    load: async () => (await import('./init.js')).initCommand,
  },
  {
    name: 'backfill',
    usage: 'backfill <pipeline>',
    summary: 'reprocess the inputs of a time range, window by window (cursor untouched, resumable)',
    load: async () => (await import('./backfill.js')).backfillCommand,
  },
  {
    name: 'replay',
    usage: 'replay',
    summary: "re-send a run's rejected rows (after fixing the cause); resolves the rejects that go through",
    load: async () => (await import('./replay.js')).replayCommand,
  },
  {
    name: 'metadata pull',
    usage: 'metadata pull',
    summary: 'read tables from Dataverse EntityDefinitions and write one snapshot JSON per table',
    load: async () => (await import('./metadata-pull.js')).metadataPullCommand,
  },
  {
    name: 'metadata diff',
    usage: 'metadata diff',
    summary: 'compare the committed metadata snapshots with the live tables; exit 1 on drift',
    load: async () => (await import('./metadata-diff.js')).metadataDiffCommand,
  },
  {
    name: 'emulator',
    usage: 'emulator',
    summary: 'run the built-in Dataverse Web API emulator in the foreground',
    load: async () => (await import('./emulator.js')).emulatorCommand,
  },
  {
    name: 'emulator service-bus',
    usage: 'emulator service-bus',
    summary: 'run the local Service Bus (AMQP) emulator in the foreground and print its connection string',
    load: async () => (await import('./emulator-service-bus.js')).emulatorServiceBusCommand,
  },
  {
    name: 'export synapse',
    usage: 'export synapse',
    summary: 'write Synapse pipeline JSON and T-SQL from the pipeline definitions (--check: fail if stale)',
    load: async () => (await import('./export-synapse.js')).exportSynapseCommand,
  },
  {
    name: 'deploy synapse',
    usage: 'deploy synapse',
    summary: 'deploy synapse/ to a Synapse workspace (linked services → datasets → pipelines → triggers)',
    load: async () => (await import('./deploy-synapse.js')).deploySynapseCommand,
  },
  {
    name: 'run-remote',
    usage: 'run-remote <pipeline>',
    summary: 'start a pipeline run in a Synapse workspace and follow it until it ends',
    load: async () => (await import('./run-remote.js')).runRemoteCommand,
  },
  {
    name: 'synapse run',
    usage: 'synapse run <pipeline|trigger>',
    summary: 'run an exported Synapse pipeline or trigger on the local runtime (lake, DuckDB, Dataverse over HTTP)',
    load: async () => (await import('./synapse-run.js')).synapseRunCommand,
  },
  {
    name: 'listen',
    usage: 'listen <pipeline>',
    summary: 'apply change messages from a session queue to Dataverse with an inbound pipeline (until stopped)',
    load: async () => (await import('./listen.js')).listenCommand,
  },
  {
    name: 'queue send',
    usage: 'queue send <queue>',
    summary: 'send change messages (JSON, checked against schemas/queue-message.schema.json) to a session queue',
    load: async () => (await import('./queue.js')).queueSendCommand,
  },
  {
    name: 'queue peek',
    usage: 'queue peek <queue>',
    summary: 'list the messages waiting on a queue, oldest first, without taking them',
    load: async () => (await import('./queue.js')).queuePeekCommand,
  },
  {
    name: 'queue dead-letters',
    usage: 'queue dead-letters <queue>',
    summary:
      'list the dead-lettered messages of a queue with their reasons; --resubmit sends them (or the ids given) back',
    load: async () => (await import('./queue.js')).queueDeadLettersCommand,
  },
  {
    name: 'report',
    usage: 'report',
    summary: 'write a run report with charts: throughput, durations, 429s, stages, server time, rejects, capacity',
    load: async () => (await import('./report.js')).reportCommand,
  },
  {
    name: 'plan capacity',
    usage: 'plan capacity',
    summary: 'plan whether the load fits the 15-minute cadence under the Dataverse service-protection limits',
    load: async () => (await import('./plan-capacity.js')).planCapacityCommand,
  },
];

/** The command's module, imported now; commands that run pipelines report to Application Insights when configured. */
export async function loadCommand(entry: CommandEntry): Promise<Command> {
  return withTelemetry(await entry.load());
}
