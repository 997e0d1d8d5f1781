import type { Command } from '../command.js';
import { rejectsCommand } from './rejects.js';
import { runCommand } from './run.js';
import { runsCommand } from './runs.js';

/** Every CLI command, one line each. */
export const COMMANDS: readonly Command[] = [runCommand, runsCommand, rejectsCommand];
