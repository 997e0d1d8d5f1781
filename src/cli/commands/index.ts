import type { Command } from '../command.js';
import { demoCommand } from './demo.js';
import { emulatorCommand } from './emulator.js';
import { exportSynapseCommand } from './export-synapse.js';
import { metadataPullCommand } from './metadata-pull.js';
import { rejectsCommand } from './rejects.js';
import { runCommand } from './run.js';
import { runsCommand } from './runs.js';

/** Every CLI command, one line each. */
export const COMMANDS: readonly Command[] = [
  demoCommand,
  runCommand,
  runsCommand,
  rejectsCommand,
  metadataPullCommand,
  emulatorCommand,
  exportSynapseCommand,
];
