// The agent's tool-call language in the service world, and its strict parser.
//
//   call(COMPANY, REQUEST, field=value, field=value, ...)
//   ask_user(field)
//   finish()
//
// Names (companies, requests, fields) are identifiers [A-Za-z][A-Za-z0-9_]*; values are
// [A-Za-z0-9@._-]+ (enough for emails, dates, ids). Spaces are allowed after commas and
// around the whole call, nowhere else. Anything else is a malformed call: the parser throws
// ActionParseError, and the world answers "error: <its message>" and lets the agent try
// again. Strict on purpose: a lenient parser would make the world's behaviour depend on
// guesses a world model cannot learn. (Pure: no Node imports.)

export type Action =
  | { kind: 'ask_user'; field: string }
  | { kind: 'call'; company: string; request: string; args: [field: string, value: string][] }
  | { kind: 'finish' };

export class ActionParseError extends Error {}

const IDENT = /^[A-Za-z][A-Za-z0-9_]*$/;
const VALUE = /^[A-Za-z0-9@._-]+$/;

export function parseAction(text: string): Action {
  const m = /^\s*([A-Za-z_]+)\((.*)\)\s*$/s.exec(text);
  if (!m) throw new ActionParseError('expected NAME(ARGS), e.g. ask_user(card_last4)');
  const [, name, inner] = m;
  // split on commas; the only allowed spacing is after a comma
  const args = inner === '' ? [] : inner.split(',').map((a, i) => (i === 0 ? a : a.replace(/^ +/, '')));
  switch (name) {
    case 'finish':
      if (args.length !== 0) throw new ActionParseError('finish takes no arguments');
      return { kind: 'finish' };
    case 'ask_user':
      if (args.length !== 1 || !IDENT.test(args[0])) throw new ActionParseError('ask_user takes one field name');
      return { kind: 'ask_user', field: args[0] };
    case 'call': {
      if (args.length < 2) throw new ActionParseError('call needs a company and a request');
      const [company, request] = args;
      if (!IDENT.test(company)) throw new ActionParseError(`bad company name '${company}'`);
      if (!IDENT.test(request)) throw new ActionParseError(`bad request name '${request}'`);
      const pairs: [string, string][] = [];
      for (const a of args.slice(2)) {
        const eq = a.indexOf('=');
        const field = a.slice(0, eq), value = a.slice(eq + 1);
        if (eq < 0 || !IDENT.test(field) || !VALUE.test(value)) throw new ActionParseError(`expected field=value, got '${a}'`);
        if (pairs.some(([f]) => f === field)) throw new ActionParseError(`field ${field} given twice`);
        pairs.push([field, value]);
      }
      return { kind: 'call', company, request, args: pairs };
    }
    default:
      throw new ActionParseError(`unknown tool '${name}'; the tools are call, ask_user, finish`);
  }
}

/** The canonical text of an action (what the scripted policies write). */
export function formatAction(a: Action): string {
  if (a.kind === 'finish') return 'finish()';
  if (a.kind === 'ask_user') return `ask_user(${a.field})`;
  return `call(${[a.company, a.request, ...a.args.map(([f, v]) => `${f}=${v}`)].join(', ')})`;
}
