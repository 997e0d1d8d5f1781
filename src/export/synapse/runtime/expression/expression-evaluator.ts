import { ExpressionError } from './expression-error.js';
import { EXPRESSION_FUNCTIONS, type FunctionEnvironment, UNIMPLEMENTED_FUNCTIONS } from './expression-functions.js';
import { type ExpressionNode, parseExpression } from './expression-parser.js';
import { isObject, type Json, textOf } from './json-value.js';

/**
 * The run context an expression sees. A function whose scope is absent (`item()` outside a ForEach, `dataset()`
 * outside a dataset) is an error naming it.
 */
export interface ExpressionScope extends FunctionEnvironment {
  pipeline?(): Json;
  activity?(name: string): Json;
  variables?(name: string): Json;
  trigger?(): Json;
  triggerBody?(): Json;
  item?(): Json;
  dataset?(): Json;
  linkedService?(): Json;
  /**
   * `true`: `if` evaluates only the taken branch and `and`/`or` stop at the first deciding argument. The docs are
   * silent on this; default `true`. Set `false` to find expressions that fail when every argument is evaluated.
   */
  readonly lazyConditionals?: boolean;
}

const CONTEXT_FUNCTIONS: Record<string, (scope: ExpressionScope, args: Json[]) => Json> = {
  pipeline: (s, a) => need(s.pipeline, 'pipeline', a, 0)(),
  activity: (s, a) => need(s.activity, 'activity', a, 1)(nameArg('activity', a[0]!)),
  variables: (s, a) => need(s.variables, 'variables', a, 1)(nameArg('variables', a[0]!)),
  trigger: (s, a) => need(s.trigger, 'trigger', a, 0)(),
  triggerBody: (s, a) => need(s.triggerBody, 'triggerBody', a, 0)(),
  triggerOutputs: (s, a) => {
    const t = need(s.trigger, 'triggerOutputs', a, 0)();
    return isObject(t) ? (t.outputs ?? null) : null;
  },
  item: (s, a) => need(s.item, 'item', a, 0)(),
  dataset: (s, a) => need(s.dataset, 'dataset', a, 0)(),
  linkedService: (s, a) => need(s.linkedService, 'linkedService', a, 0)(),
};

const WHERE: Record<string, string> = {
  item: 'inside a ForEach',
  dataset: 'inside a dataset definition',
  linkedService: 'inside a linked service definition',
  trigger: 'in a trigger definition or a triggered run',
  triggerBody: 'in an event trigger definition',
  triggerOutputs: 'in a trigger definition',
  activity: 'inside a pipeline',
  variables: 'inside a pipeline',
  pipeline: 'inside a pipeline',
};

function need<F>(fn: F | undefined, name: string, args: Json[], count: number): F {
  if (args.length !== count) throw new ExpressionError(`\`${name}()\` takes ${count} argument(s), got ${args.length}.`);
  if (!fn) throw new ExpressionError(`\`${name}()\` is only available ${WHERE[name]}.`);
  return fn;
}

function nameArg(fn: string, v: Json): string {
  if (typeof v !== 'string')
    throw new ExpressionError(`\`${fn}()\` takes a name string, got \`${JSON.stringify(v)}\`.`);
  return v;
}

/** Every function name the runtime evaluates, for reports. */
export const KNOWN_FUNCTIONS: readonly string[] = [
  ...Object.keys(CONTEXT_FUNCTIONS),
  'if',
  'and',
  'or',
  ...Object.keys(EXPRESSION_FUNCTIONS),
];

/** Evaluates one parsed expression. */
export function evaluateNode(node: ExpressionNode, scope: ExpressionScope): Json {
  switch (node.kind) {
    case 'literal':
      return node.value;
    case 'member': {
      const target = evaluateNode(node.target, scope);
      const key = typeof node.key === 'string' ? node.key : evaluateNode(node.key, scope);
      return member(target, key, node.nullSafe, node);
    }
    case 'call':
      return call(node.name, node.args, scope);
  }
}

function member(target: Json, key: Json, nullSafe: boolean, node: ExpressionNode): Json {
  if (target === null || target === undefined) {
    if (nullSafe) return null;
    throw new ExpressionError(
      `Cannot read \`${textOf(key)}\` of null in \`${describe(node)}\`; use \`?.\` when the value may be missing.`,
    );
  }
  if (Array.isArray(target)) {
    if (typeof key === 'number' && Number.isInteger(key)) {
      if (key >= 0 && key < target.length) return target[key]!;
      if (nullSafe) return null;
      throw new ExpressionError(
        `Index \`${key}\` is outside the array of length ${target.length} in \`${describe(node)}\`.`,
      );
    }
    throw new ExpressionError(
      `An array takes an integer index, got \`${JSON.stringify(key)}\` in \`${describe(node)}\`.`,
    );
  }
  if (isObject(target) && typeof key === 'string') {
    if (Object.hasOwn(target, key)) return target[key]!;
    // Property names are matched case-insensitively when no exact match exists: the docs show both
    // `activity('X').Status` and `.status` (learn.microsoft.com/azure/data-factory/tutorial-pipeline-failure-error-handling).
    const lower = key.toLowerCase();
    const found = Object.keys(target).find((k) => k.toLowerCase() === lower);
    if (found !== undefined) return target[found]!;
    if (nullSafe) return null;
    throw new ExpressionError(
      `Property \`${key}\` does not exist in \`${describe(node)}\` (available: ${Object.keys(target).slice(0, 12).join(', ') || 'none'}); use \`?.\` when it may be missing.`,
    );
  }
  if (nullSafe) return null;
  throw new ExpressionError(
    `Cannot read \`${textOf(key)}\` of \`${JSON.stringify(target).slice(0, 80)}\` in \`${describe(node)}\`.`,
  );
}

function call(name: string, argNodes: readonly ExpressionNode[], scope: ExpressionScope): Json {
  const lazy = scope.lazyConditionals ?? true;
  if (name === 'if') {
    if (argNodes.length !== 3) throw new ExpressionError(`\`if()\` takes 3 arguments, got ${argNodes.length}.`);
    const condition = evaluateNode(argNodes[0]!, scope);
    if (typeof condition !== 'boolean') {
      throw new ExpressionError(`\`if()\` needs a boolean condition, got \`${JSON.stringify(condition)}\`.`);
    }
    if (lazy) return evaluateNode(argNodes[condition ? 1 : 2]!, scope);
    const yes = evaluateNode(argNodes[1]!, scope);
    const no = evaluateNode(argNodes[2]!, scope);
    return condition ? yes : no;
  }
  if (name === 'and' || name === 'or') {
    if (argNodes.length < 2)
      throw new ExpressionError(`\`${name}()\` takes at least 2 arguments, got ${argNodes.length}.`);
    const decisive = name === 'or';
    let result = !decisive;
    for (const arg of argNodes) {
      const v = evaluateNode(arg, scope);
      if (typeof v !== 'boolean')
        throw new ExpressionError(`\`${name}()\` needs booleans, got \`${JSON.stringify(v)}\`.`);
      if (v === decisive) {
        result = decisive;
        if (lazy) break;
      }
    }
    return result;
  }
  const args = argNodes.map((a) => evaluateNode(a, scope));
  const context = CONTEXT_FUNCTIONS[name];
  if (context) return context(scope, args);
  const fn = EXPRESSION_FUNCTIONS[name];
  if (fn) return fn(args, scope);
  if ((UNIMPLEMENTED_FUNCTIONS as readonly string[]).includes(name)) {
    throw new ExpressionError(
      `Expression function \`${name}()\` is documented but not implemented by the local runtime.`,
    );
  }
  throw new ExpressionError(
    `Unknown expression function \`${name}()\`; see learn.microsoft.com/azure/data-factory/control-flow-expression-language-functions for the function list (names are case-sensitive).`,
  );
}

function describe(node: ExpressionNode): string {
  switch (node.kind) {
    case 'literal':
      return typeof node.value === 'string' ? `'${node.value.replaceAll("'", "''")}'` : String(node.value);
    case 'call':
      return `${node.name}(${node.args.map(describe).join(', ')})`;
    case 'member':
      return typeof node.key === 'string'
        ? `${describe(node.target)}${node.nullSafe ? '?.' : '.'}${node.key}`
        : `${describe(node.target)}${node.nullSafe ? '?[' : '['}${describe(node.key)}]`;
  }
}

/** Parses and evaluates an expression body (text after `@`). */
export function evaluateExpression(body: string, scope: ExpressionScope): Json {
  return evaluateNode(parseExpression(body), scope);
}
