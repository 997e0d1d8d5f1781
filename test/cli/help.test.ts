import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Command } from '../../src/cli/command.js';
import { COMMANDS, loadCommand } from '../../src/cli/commands/index.js';
import { parseCommandLine } from '../../src/cli/parse.js';

/** Every command with its options (the CLI loads only the one a line names; help of each needs each). */
const LOADED: readonly Command[] = await Promise.all(COMMANDS.map((entry) => loadCommand(entry)));

/** `ferry help <command>` as a user reads it, for every command (in-process: the help text is all it renders). */
function helpOf(name: string): { code: number; text: string } {
  let text = '';
  const parsed = parseCommandLine(['help', ...name.split(' ')], LOADED, {
    writeOut: (t) => (text += t),
    writeErr: (t) => (text += t),
  });
  assert.ok('exitCode' in parsed, `help ${name} printed help`);
  return { code: parsed.exitCode, text };
}

/** The option entries of a help text: flags, then the description (which may wrap onto indented lines). */
function optionEntries(text: string): Array<{ flags: string; description: string }> {
  const entries: Array<{ flags: string; description: string }> = [];
  for (const line of text.split('\n')) {
    const start = /^ {2}(-\S+(?: \S+)?(?:, --\S+(?: \S+)?)?) {2,}(.*)$/.exec(line);
    if (start) entries.push({ flags: start[1]!, description: start[2]! });
    else if (/^ {10,}\S/.test(line) && entries.length) entries.at(-1)!.description += ` ${line.trim()}`;
    else if (!/^ {2}/.test(line)) entries.push({ flags: '', description: '' });
  }
  return entries.filter((e) => e.flags);
}

for (const command of LOADED) {
  test(`ferry help ${command.name}: every option described, with its default or variable; examples`, () => {
    const { code, text } = helpOf(command.name);
    assert.equal(code, 0);
    assert.match(text, new RegExp(`^Usage: ferry ${command.name} `, 'm'));
    assert.match(text, /^Examples:\n {2}\S.*\n {4}ferry /m, `${command.name} has an example`);
    const entries = optionEntries(text);
    for (const [name, spec] of Object.entries(command.options ?? {})) {
      const entry = entries.find((e) => new RegExp(`(^|, )--${name}( |$)`).test(e.flags));
      assert.ok(entry, `--${name} of ${command.name} is in the help`);
      assert.ok(entry.description.length > 10, `--${name} of ${command.name} is described`);
      // A flag with a value says what happens without it; a switch is off unless given.
      if (spec.type === 'string')
        assert.match(entry.description, /\((default|env): /, `--${name} of ${command.name} names its default`);
    }
    for (const flag of ['--target <name>', '--dataverse <url>', '--lake <dir|url>', '--state <dir>'])
      assert.ok(
        entries.some((e) => e.flags === flag && /env: FERRY_/.test(e.description)),
        `${flag} with its variable`,
      );
  });
}
