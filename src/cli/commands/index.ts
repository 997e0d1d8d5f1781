import type { Command } from '../command.js';

/** Every CLI command, one line each. */
export const COMMANDS: readonly Command[] = [];
