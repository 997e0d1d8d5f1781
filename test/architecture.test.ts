import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

/**
 * The boundaries between the parts of `src/`, read from the imports of every file (static, `export … from`, side
 * effect, dynamic `import()`, also in type position). Type-only imports count: a type from a connector in
 * core is the coupling this test is here to stop. Each rule names the part, what it may not import and why; see the
 * README of each `src/` folder for what it may import.
 */
const ROOT = path.resolve(import.meta.dirname, '..');

/** A part of the code base, by where its files live (repository-relative, `/`). */
type Part =
  | 'core'
  | 'connectors'
  | 'dialects'
  | 'dialect implementations'
  | 'stages'
  | 'stage run modules'
  | 'cli'
  | 'emulator'
  | 'export'
  | 'pipelines';

/**
 * The parts a file belongs to (a dialect implementation is also under dialects; a stage run module also a stage).
 * `text` is the file's source, when known.
 */
function partsOf(file: string, text = ''): Part[] {
  const parts: Part[] = [];
  if (file.startsWith('src/core/')) parts.push('core');
  if (file.startsWith('src/connectors/')) parts.push('connectors');
  if (file.startsWith('src/dialects/')) parts.push('dialects');
  if (/^src\/dialects\/(?:duckdb|tsql)\//.test(file)) parts.push('dialect implementations');
  if (file.startsWith('src/stages/')) {
    parts.push('stages');
    // A stage kind is `stages/<kind>/spec.ts` (factory, spec type, validation; no I/O) and `stages/<kind>/run.ts`
    // (its `StageImpl`). Run code is `run.ts`, the registry, and any file that declares a `StageImpl` (the older
    // layout of one file per kind); spec modules and the helpers beside them are what pipelines and the exporter read.
    const name = path.posix.basename(file);
    if (name === 'run.ts' || name === 'registry.ts' || /\bStageImpl\b/.test(text)) parts.push('stage run modules');
  }
  if (file.startsWith('src/cli/')) parts.push('cli');
  if (file.startsWith('src/emulator/')) parts.push('emulator');
  if (file.startsWith('src/export/')) parts.push('export');
  if (file.startsWith('pipelines/')) parts.push('pipelines');
  return parts;
}

/** What a part may not import, and why. */
const RULES: ReadonlyArray<{ readonly from: Part; readonly forbidden: readonly Part[]; readonly why: string }> = [
  {
    from: 'core',
    forbidden: ['connectors', 'dialect implementations', 'stages', 'cli'],
    why: 'core holds the neutral models (pipeline, metadata, Lake, staging contract); implementations depend on it, not the other way',
  },
  { from: 'stages', forbidden: ['cli'], why: 'stages run under any host (CLI, scheduler, Synapse runtime, tests)' },
  { from: 'connectors', forbidden: ['stages'], why: 'connectors wrap one outside service each; stages compose them' },
  {
    from: 'connectors',
    forbidden: ['dialect implementations'],
    why: "connectors keep format logic (model.json, Delta log, folder plans); the SQL that reads the files is the dialect's",
  },
  { from: 'dialects', forbidden: ['stages'], why: 'a dialect renders plans; the stages call it' },
  {
    from: 'emulator',
    forbidden: ['connectors', 'stages', 'dialects', 'export'],
    why: 'the emulator stands in for the service the client is tested against; a bug shared by both would pass every test',
  },
  { from: 'pipelines', forbidden: ['connectors'], why: 'a pipeline file is data: stage specs, no I/O' },
  {
    from: 'export',
    forbidden: ['stage run modules'],
    why: 'the exporter reads stage specs; the code that runs a stage is for the local runner',
  },
];

/**
 * Imports that break a rule today and that another change in flight removes, each with who removes it. The list can
 * only shrink: an entry that no longer occurs fails the test, so it is deleted when its import goes.
 */
const PENDING_ELSEWHERE: ReadonlyArray<{ readonly file: string; readonly imports: string; readonly owner: string }> = [
  {
    file: 'src/export/synapse/synapse-exporter.ts',
    imports: 'src/stages/convert-to-dataverse.ts',
    owner: 'arch-stages',
  },
];

const SOURCE = /\.(?:ts|mts|cts|js|mjs)$/;
const SPECIFIERS = [
  // import x from, import type { x } from, export { x } from, export * from
  /(?:^|[\n;])[ \t]*(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/g,
  // a side-effect import of a path alone
  /(?:^|[\n;])[ \t]*import\s*['"]([^'"]+)['"]/g,
  // dynamic import(), also in type position (an import type of a path followed by `.Type`)
  /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
];

function filesUnder(dir: string): string[] {
  const abs = path.join(ROOT, dir);
  if (!existsSync(abs)) return [];
  const out: string[] = [];
  for (const entry of readdirSync(abs, { withFileTypes: true })) {
    const rel = `${dir}/${entry.name}`;
    if (entry.isDirectory()) out.push(...filesUnder(rel));
    else if (SOURCE.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/** Comments are dropped first so that an example in a doc comment is not read as an import. */
function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
}

/** The repository-relative files a file imports (relative specifiers only; packages are `dependencies.test.ts`'s). */
function importsOf(file: string, text: string): string[] {
  const out = new Set<string>();
  const code = stripComments(text);
  for (const pattern of SPECIFIERS) {
    for (const match of code.matchAll(pattern)) {
      const specifier = match[1]!;
      if (!specifier.startsWith('.')) continue;
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
      out.add(resolved.replace(/\.js$/, '.ts'));
    }
  }
  return [...out];
}

interface Violation {
  readonly file: string;
  readonly imports: string;
  readonly message: string;
}

function violationsIn(sources: ReadonlyMap<string, string>): Violation[] {
  const out: Violation[] = [];
  for (const [file, text] of sources) {
    const from = partsOf(file, text);
    for (const imported of importsOf(file, text)) {
      const to = partsOf(imported, sources.get(imported));
      for (const rule of RULES) {
        if (!from.includes(rule.from)) continue;
        const hit = rule.forbidden.find((part) => to.includes(part));
        // Within its own part a file may import anything (a stage run module its spec, a dialect its siblings).
        if (hit && !(from.includes(hit) && rule.from === hit)) {
          out.push({
            file,
            imports: imported,
            message: `${file} imports ${imported}: ${rule.from} → ${hit} (${rule.why})`,
          });
        }
      }
    }
  }
  return out;
}

const sources = new Map(
  [...filesUnder('src'), ...filesUnder('pipelines')].map((file) => [file, readFileSync(path.join(ROOT, file), 'utf8')]),
);

test('the import reader sees every import form, resolves relative paths and skips comments', () => {
  const text = [
    "import a from '../core/a.js';",
    "import type { B } from '../connectors/b.js';",
    "import {\n  c,\n  d,\n} from './c.js';",
    "export { e } from '../stages/e.js';",
    "export * from '../stages/f.js';",
    "import '../cli/side-effect.js';",
    "const g = await import('../export/g.js');",
    "let h: import('../emulator/h.js').H;",
    "import fs from 'node:fs';",
    "// import x from '../cli/commented.js';",
    "/** import('../cli/in-doc.js') */",
  ].join('\n');
  assert.deepEqual(importsOf('src/core/x.ts', text).sort(), [
    'src/cli/side-effect.ts',
    'src/connectors/b.ts',
    'src/core/a.ts',
    'src/core/c.ts',
    'src/emulator/h.ts',
    'src/export/g.ts',
    'src/stages/e.ts',
    'src/stages/f.ts',
  ]);
});

test('each rule fails on the import it forbids, naming file and import', () => {
  const cases: Array<[string, string, boolean]> = [
    ['src/core/runner.ts', '../connectors/lake/local-lake.js', true],
    ['src/core/runner.ts', '../dialects/duckdb/driver.js', true],
    ['src/core/runner.ts', '../dialects/sql-dialect.js', false],
    ['src/core/runner.ts', '../stages/registry.js', true],
    ['src/core/runner.ts', '../cli/format.js', true],
    ['src/stages/write-parquet/run.ts', '../../cli/services.js', true],
    ['src/stages/write-parquet/run.ts', '../../connectors/lake/open-lake.js', false],
    ['src/connectors/lake/x.ts', '../../stages/write-parquet/spec.js', true],
    ['src/connectors/synapse-link/x.ts', '../../dialects/duckdb/synapse-link.js', true],
    ['src/connectors/synapse-link/x.ts', '../../dialects/sql-dialect.js', false],
    ['src/dialects/duckdb/x.ts', '../../stages/registry.js', true],
    ['src/emulator/x.ts', '../connectors/dataverse/odata-key.js', true],
    ['src/emulator/x.ts', '../dialects/sql-dialect.js', true],
    ['src/emulator/x.ts', '../export/synapse/x.js', true],
    ['src/emulator/x.ts', '../core/errors.js', false],
    ['pipelines/p.ts', '../src/connectors/lake/open-lake.js', true],
    ['pipelines/p.ts', '../src/stages/write-parquet/spec.js', false],
    ['src/export/synapse/x.ts', '../../stages/write-parquet/run.js', true],
    ['src/export/synapse/x.ts', '../../stages/write-parquet.js', true],
    ['src/export/synapse/x.ts', '../../stages/write-parquet/spec.js', false],
    ['src/export/synapse/x.ts', '../../stages/convert-to-dataverse/conversion.js', false],
    ['src/export/synapse/x.ts', '../../stages/registry.js', true],
  ];
  // The imported files' texts, where the part depends on them: a flat stage file declaring a StageImpl is run code.
  const imported = new Map([
    ['src/stages/write-parquet.ts', 'export const writeParquetStage: StageImpl<WriteParquetSpec> = {};'],
    ['src/stages/convert-to-dataverse/conversion.ts', 'export function loadConversionPlan() {}'],
  ]);
  for (const [file, specifier, forbidden] of cases) {
    const found = violationsIn(new Map([[file, `import { x } from '${specifier}';`], ...imported]));
    assert.equal(found.length > 0, forbidden, `${file} → ${specifier}`);
    if (forbidden) assert.match(found[0]!.message, new RegExp(`^${file} imports `));
  }
});

test('no file under src/ or pipelines/ imports across a forbidden boundary', () => {
  assert.ok(sources.size > 100, `read only ${sources.size} files; is the walk broken?`);
  const pending = (v: Violation) => PENDING_ELSEWHERE.some((p) => p.file === v.file && p.imports === v.imports);
  const found = violationsIn(sources)
    .filter((v) => !pending(v))
    .map((v) => v.message);
  assert.deepEqual(found, [], 'move the code to the part that may import it (see the folder READMEs)');
});

test('PENDING_ELSEWHERE only lists imports that still occur (the list only shrinks)', () => {
  const found = violationsIn(sources);
  const gone = PENDING_ELSEWHERE.filter((p) => !found.some((v) => v.file === p.file && v.imports === p.imports)).map(
    (p) => `${p.file} → ${p.imports} (${p.owner})`,
  );
  assert.deepEqual(gone, [], 'these imports are gone: delete their PENDING_ELSEWHERE entries');
});

/** Folders whose README another change in flight adds, with who adds it; the list only shrinks, like the one above. */
const README_PENDING_ELSEWHERE: ReadonlyArray<{ readonly folder: string; readonly owner: string }> = [
  { folder: 'src/stages', owner: 'arch-stages' },
];

/**
 * Every folder directly under `src/` has a README; a deeper folder with more than two source files has one too, or
 * its parent's README describes it by name (`duckdb/`, `expression/`).
 */
function foldersWithoutReadme(): string[] {
  const missing: string[] = [];
  const visit = (dir: string, depth: number) => {
    const entries = readdirSync(path.join(ROOT, dir), { withFileTypes: true });
    const hasReadme = entries.some((e) => e.name === 'README.md');
    const sourceFiles = entries.filter((e) => e.isFile() && SOURCE.test(e.name)).length;
    if (depth > 0 && !hasReadme) {
      const name = path.posix.basename(dir);
      const parentReadme = path.join(ROOT, path.posix.dirname(dir), 'README.md');
      const parentText = existsSync(parentReadme) ? readFileSync(parentReadme, 'utf8') : '';
      const described = parentText.includes(`${name}/`) || parentText.includes(`\`${name}\``);
      if (depth === 1 || (sourceFiles > 2 && !described)) missing.push(dir);
    }
    for (const e of entries) if (e.isDirectory()) visit(`${dir}/${e.name}`, depth + 1);
  };
  visit('src', 0);
  return missing;
}

test('every folder under src/ has a README (what lives there, what it may import, where the next one goes)', () => {
  const missing = foldersWithoutReadme();
  const pending = new Set(README_PENDING_ELSEWHERE.map((p) => p.folder));
  assert.deepEqual(
    missing.filter((f) => !pending.has(f)),
    [],
    'add a short README.md to these folders',
  );
  const gone = README_PENDING_ELSEWHERE.filter((p) => !missing.includes(p.folder)).map(
    (p) => `${p.folder} (${p.owner})`,
  );
  assert.deepEqual(gone, [], 'these folders have a README now: delete their README_PENDING_ELSEWHERE entries');
});
