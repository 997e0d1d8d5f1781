import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';

/**
 * Dependencies as declared: every package the code imports is in package.json, `src/` and `bin/` (what a user runs)
 * import no devDependency at run time, and package-lock.json's root lists what package.json lists, so `npm ci`
 * installs exactly that.
 */
const ROOT = path.resolve(import.meta.dirname, '../..');
const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const BUILTINS = new Set(builtinModules);

interface Use {
  readonly file: string;
  readonly pkg: string;
  /** `import type` / `export type`: erased at run time, needs only the types. */
  readonly typeOnly: boolean;
}

const SOURCE = /\.(?:ts|mts|cts|js|mjs|cjs)$/;
const STATIC = /(?:^|\n)[ \t]*(import|export)(\s+type\b)?[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/g;
const SIDE_EFFECT = /(?:^|\n)[ \t]*import\s*['"]([^'"]+)['"]/g;
const DYNAMIC = /\b(?:import|require)\s*\(\s*['"]([^'"]+)['"]\s*\)/g;
/** Code that runs a package's file directly (`node_modules/azurite/dist/...`) depends on it too. */
const MODULE_PATH = /node_modules\/((?:@[\w.-]+\/)?[\w.-]+)\//g;

function files(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && entry.name !== 'fixtures') out.push(...files(rel));
    } else if (SOURCE.test(entry.name)) out.push(rel);
  }
  return out;
}

/** `@scope/name/sub/path` → `@scope/name`; `name/sub` → `name`; relative paths and builtins → undefined. */
function packageOf(specifier: string): string | undefined {
  if (specifier.startsWith('.') || specifier.startsWith('/') || specifier.startsWith('node:')) return undefined;
  const parts = specifier.split('/');
  const pkg = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
  return BUILTINS.has(pkg) ? undefined : pkg;
}

function usesIn(file: string, text: string): Use[] {
  const out: Use[] = [];
  const add = (specifier: string, typeOnly: boolean) => {
    const pkg = packageOf(specifier);
    if (pkg) out.push({ file, pkg, typeOnly });
  };
  for (const m of text.matchAll(STATIC)) add(m[3]!, Boolean(m[2]));
  for (const m of text.matchAll(SIDE_EFFECT)) add(m[1]!, false);
  for (const m of text.matchAll(DYNAMIC)) add(m[1]!, false);
  for (const m of text.matchAll(MODULE_PATH)) add(m[1]!, false);
  return out;
}

const SELF = path.relative(ROOT, import.meta.filename);
// This file is left out: its scanner test holds sample imports of packages that do not exist.
const uses = ['src', 'bin', 'bench', 'test'].flatMap((dir) =>
  files(dir)
    .filter((file) => file !== SELF)
    .flatMap((file) => usesIn(file, readFileSync(path.join(ROOT, file), 'utf8'))),
);

test('the import scanner sees every import form, and only packages', () => {
  const text = [
    "import a from 'alpha';",
    "import type { B } from '@scope/beta/sub/path.js';",
    "import {\n  c,\n  d,\n} from 'gamma';",
    "export { e } from 'delta';",
    "import 'side-effect';",
    "const f = await import('epsilon');",
    "const g = require('zeta/build/x.js');",
    "const bin = path.resolve('node_modules/eta/dist/main.js');",
    "import fs from 'node:fs';",
    "import path from 'path';",
    "import own from './own.js';",
  ].join('\n');
  assert.deepEqual(
    usesIn('x.ts', text).map((u) => `${u.pkg}${u.typeOnly ? ' (type)' : ''}`),
    ['alpha', '@scope/beta (type)', 'gamma', 'delta', 'side-effect', 'epsilon', 'zeta', 'eta'],
  );
});

test('every imported package is declared in package.json', () => {
  assert.ok(uses.length > 10, `found only ${uses.length} package imports; is the scanner broken?`);
  const declared = new Set([...Object.keys(manifest.dependencies), ...Object.keys(manifest.devDependencies)]);
  const undeclared = uses
    .filter((u) => !declared.has(u.pkg) && !(u.typeOnly && declared.has(`@types/${u.pkg}`)))
    .map((u) => `${u.file} imports \`${u.pkg}\``);
  assert.deepEqual(undeclared, [], 'declare these packages with npm install <name> --save-exact');
});

test('what a user runs (src/, bin/) imports no devDependency at run time', () => {
  const dev = new Set(Object.keys(manifest.devDependencies));
  const wrong = uses
    .filter((u) => (u.file.startsWith('src/') || u.file.startsWith('bin/')) && !u.typeOnly && dev.has(u.pkg))
    .map((u) => `${u.file} imports devDependency \`${u.pkg}\``);
  assert.deepEqual(wrong, [], 'move these packages to dependencies (npm install <name> --save-exact)');
});

test('package-lock.json declares exactly what package.json declares, each package locked', () => {
  const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string; dependencies?: object; devDependencies?: object }>;
  };
  const root = lock.packages['']!;
  assert.deepEqual(root.dependencies ?? {}, manifest.dependencies);
  assert.deepEqual(root.devDependencies ?? {}, manifest.devDependencies);
  for (const [name, version] of Object.entries({ ...manifest.dependencies, ...manifest.devDependencies })) {
    assert.equal(lock.packages[`node_modules/${name}`]?.version, version, `${name} is locked at ${version}`);
  }
});

test('vendor SDKs are imported only from src/connectors and src/dialects', () => {
  // Cloud and database client libraries; ajv (JSON Schema) and commander (CLI) are plain libraries.
  const vendor = /^(?:@azure\/|@duckdb\/|better-sqlite3$|mssql$|rhea$)/;
  // The Service Bus emulator is a stand-in service, not client code: it serves AMQP with `rhea`, the protocol library
  // the SDK itself is built on, as the Dataverse emulator serves HTTP with node:http.
  const serverSide = (u: { file: string; pkg: string }) => u.file.startsWith('src/emulator/') && u.pkg === 'rhea';
  const outside = uses
    .filter(
      (u) =>
        u.file.startsWith('src/') &&
        !/^src\/(?:connectors|dialects)\//.test(u.file) &&
        vendor.test(u.pkg) &&
        !serverSide(u),
    )
    .map((u) => `${u.file} imports \`${u.pkg}\``);
  assert.deepEqual(outside, [], 'move the code that talks to the vendor SDK into src/connectors (or src/dialects)');
});
