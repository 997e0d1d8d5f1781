// Writes the error-code catalogue (src/core/error-codes.ts) into README.md between its two markers.
import fs from 'node:fs';
import path from 'node:path';
import { errorCodesTable } from '../src/core/error-codes.js';

const START = '<!-- error-codes:start (npm run docs:error-codes) -->';
const END = '<!-- error-codes:end -->';

const readme = path.resolve(import.meta.dirname, '../README.md');
const text = fs.readFileSync(readme, 'utf8');
const from = text.indexOf(START);
const to = text.indexOf(END);
if (from < 0 || to < from) throw new Error(`README.md lacks the markers ${START} … ${END}; add them where the table goes.`);
fs.writeFileSync(readme, `${text.slice(0, from + START.length)}\n${errorCodesTable()}\n${text.slice(to)}`);
console.log('README.md: error-code table written');
