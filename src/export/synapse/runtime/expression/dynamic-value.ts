import { ExpressionError } from './expression-error.js';
import { type ExpressionScope, evaluateExpression } from './expression-evaluator.js';
import { isObject, type Json, textOf } from './json-value.js';

/**
 * Evaluates a JSON string value per the documented grammar: `"@e"` → the value of `e` with its type; `"…@{e}…"` →
 * a string with each `e` interpolated; `"@@…"` → the literal text after one `@`; any other string as is
 * (learn.microsoft.com/azure/data-factory/control-flow-expression-language-functions, "Expressions").
 */
export function evaluateString(text: string, scope: ExpressionScope): Json {
  if (text.startsWith('@@')) return text.slice(1);
  if (text.startsWith('@') && !text.startsWith('@{')) return evaluateExpression(text.slice(1), scope);
  if (!text.includes('@{')) return text;
  return interpolate(text, scope);
}

function interpolate(text: string, scope: ExpressionScope): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const at = text.indexOf('@', i);
    if (at < 0) {
      out += text.slice(i);
      break;
    }
    out += text.slice(i, at);
    if (text[at + 1] === '@') {
      // `@@{…}` is the literal text `@{…}`: the documented "Answer is: @@{pipeline()…}" example.
      out += '@';
      i = at + 2;
      continue;
    }
    if (text[at + 1] !== '{') {
      out += '@';
      i = at + 1;
      continue;
    }
    const end = closingBrace(text, at + 2);
    out += textOf(evaluateExpression(text.slice(at + 2, end), scope));
    i = end + 1;
  }
  return out;
}

/** Index of the `}` closing an `@{`, skipping braces inside `'…'` string literals. */
function closingBrace(text: string, from: number): number {
  let inString = false;
  let depth = 0;
  for (let j = from; j < text.length; j++) {
    const c = text[j];
    if (c === "'") inString = !inString;
    else if (!inString && c === '{') depth++;
    else if (!inString && c === '}') {
      if (depth === 0) return j;
      depth--;
    }
  }
  throw new ExpressionError(`Unterminated \`@{\` in \`${text.slice(0, 200)}\`; close it with \`}\`.`);
}

/** True for the REST `Expression` object `{ "value": "…", "type": "Expression" }`. */
export function isExpressionObject(value: unknown): value is { value: string; type: 'Expression' } {
  return (
    isObject(value) && value.type === 'Expression' && typeof value.value === 'string' && Object.keys(value).length === 2
  );
}

/**
 * Evaluates a property value: `Expression` objects and `@` strings are evaluated, objects and arrays recursively,
 * anything else is returned as is.
 */
export function evaluateValue(value: unknown, scope: ExpressionScope): Json {
  if (isExpressionObject(value)) return evaluateString(value.value, scope);
  if (typeof value === 'string') return evaluateString(value, scope);
  if (Array.isArray(value)) return value.map((v) => evaluateValue(v, scope));
  if (isObject(value)) {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(value)) out[k] = evaluateValue(v, scope);
    return out;
  }
  return (value ?? null) as Json;
}
