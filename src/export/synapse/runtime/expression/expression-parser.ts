import { ExpressionError } from './expression-error.js';

/** A parsed pipeline expression (the body after `@`, or inside `@{…}`). */
export type ExpressionNode =
  | { readonly kind: 'literal'; readonly value: string | number | boolean | null; readonly float?: boolean }
  | { readonly kind: 'call'; readonly name: string; readonly args: readonly ExpressionNode[] }
  | {
      readonly kind: 'member';
      readonly target: ExpressionNode;
      /** `.x` gives a name; `[e]` gives an expression (string key or zero-based index). */
      readonly key: string | ExpressionNode;
      /** `?.` / `?[` : null instead of an error when the left side or the property is missing. */
      readonly nullSafe: boolean;
    };

type Token =
  | { readonly t: 'ident'; readonly v: string; readonly at: number }
  | { readonly t: 'string'; readonly v: string; readonly at: number }
  | { readonly t: 'number'; readonly v: number; readonly float: boolean; readonly at: number }
  | { readonly t: 'punct'; readonly v: '(' | ')' | ',' | '.' | '[' | ']' | '?.' | '?['; readonly at: number }
  | { readonly t: 'end'; readonly at: number };

/**
 * Tokens of the expression grammar: identifiers, `'…'` strings whose only escape is `''`, numbers (`1`, `1.5`, `.3`,
 * `-2`), and `( ) , . [ ] ?. ?[`. No backslash escapes exist (learn.microsoft.com/azure/data-factory/
 * control-flow-expression-language-functions, "Expressions").
 */
function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "'") {
      let value = '';
      let j = i + 1;
      for (;;) {
        if (j >= text.length) throw new ExpressionError(`Unterminated string literal starting at ${i} in \`${text}\``);
        if (text[j] === "'") {
          if (text[j + 1] === "'") {
            value += "'";
            j += 2;
            continue;
          }
          break;
        }
        value += text[j];
        j++;
      }
      tokens.push({ t: 'string', v: value, at: i });
      i = j + 1;
      continue;
    }
    const numberMatch = /^-?(\d+(\.\d+)?|\.\d+)([eE][+-]?\d+)?/.exec(text.slice(i));
    if (numberMatch && (c !== '-' || /[-\d.]/.test(c))) {
      const raw = numberMatch[0];
      tokens.push({ t: 'number', v: Number(raw), float: /[.eE]/.test(raw), at: i });
      i += raw.length;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i))!;
      tokens.push({ t: 'ident', v: m[0], at: i });
      i += m[0].length;
      continue;
    }
    if (c === '?' && (text[i + 1] === '.' || text[i + 1] === '[')) {
      tokens.push({ t: 'punct', v: text[i + 1] === '.' ? '?.' : '?[', at: i });
      i += 2;
      continue;
    }
    if ('(),.[]'.includes(c)) {
      tokens.push({ t: 'punct', v: c as '(', at: i });
      i++;
      continue;
    }
    throw new ExpressionError(`Unexpected character \`${c}\` at ${i} in expression \`${text}\``);
  }
  tokens.push({ t: 'end', at: text.length });
  return tokens;
}

/** Parses one expression body (without the leading `@`). */
export function parseExpression(text: string): ExpressionNode {
  const tokens = tokenize(text);
  let pos = 0;
  const peek = () => tokens[pos]!;
  const fail = (what: string): never => {
    const token = peek();
    throw new ExpressionError(`Expected ${what} at ${token.at} in expression \`${text}\``);
  };
  const expectPunct = (v: string) => {
    const token = peek();
    if (token.t !== 'punct' || token.v !== v) fail(`\`${v}\``);
    pos++;
  };

  const primary = (): ExpressionNode => {
    const token = peek();
    if (token.t === 'string') {
      pos++;
      return { kind: 'literal', value: token.v };
    }
    if (token.t === 'number') {
      pos++;
      return { kind: 'literal', value: token.v, float: token.float };
    }
    if (token.t === 'ident') {
      pos++;
      const next = peek();
      if (next.t === 'punct' && next.v === '(') {
        pos++;
        const args: ExpressionNode[] = [];
        const close = peek();
        if (!(close.t === 'punct' && close.v === ')')) {
          for (;;) {
            args.push(postfix());
            const sep = peek();
            if (sep.t === 'punct' && sep.v === ',') {
              pos++;
              continue;
            }
            break;
          }
        }
        expectPunct(')');
        return { kind: 'call', name: token.v, args };
      }
      if (token.v === 'true' || token.v === 'false') return { kind: 'literal', value: token.v === 'true' };
      if (token.v === 'null') return { kind: 'literal', value: null };
      throw new ExpressionError(
        `\`${token.v}\` at ${token.at} is neither a function call nor a literal in expression \`${text}\`; call it as \`${token.v}(…)\` or quote it as a string.`,
      );
    }
    return fail('a function call, string or number');
  };

  const postfix = (): ExpressionNode => {
    let node = primary();
    for (;;) {
      const token = peek();
      if (token.t !== 'punct') return node;
      if (token.v === '.' || token.v === '?.') {
        pos++;
        const name = peek();
        if (name.t !== 'ident') fail('a property name');
        pos++;
        node = { kind: 'member', target: node, key: (name as { v: string }).v, nullSafe: token.v === '?.' };
      } else if (token.v === '[' || token.v === '?[') {
        pos++;
        const key = postfix();
        expectPunct(']');
        node = { kind: 'member', target: node, key, nullSafe: token.v === '?[' };
      } else {
        return node;
      }
    }
  };

  const node = postfix();
  if (peek().t !== 'end') fail('the end of the expression');
  return node;
}
