// The calculator, the tool registry and the engine hook: right answers, every failure as an
// "error: ..." answer (never an exception, never code run), and forced ids only after a
// finished call.
import { beforeAll, describe, expect, it } from 'vitest';
import { calculate, evaluate, formatNumber, MAX_INPUT_CHARS } from '../src/tools/calculator.ts';
import { ToolRegistry, type Tool } from '../src/tools/registry.ts';
import { defaultToolRegistry, parseAssistantOutput, toolHook } from '../src/tools/hook.ts';
import { replyText } from '../src/eval/tasks.ts';
import { Tokenizer, trainTokenizer, renderConversation, SPECIALS } from '../src/tokenizer/index.ts';

describe('calculator', () => {
  it('computes with precedence, associativity, unary minus and parentheses', () => {
    const cases: [string, string][] = [
      ['2+3*4', '14'],
      ['(2+3)*4', '20'],
      ['37*12', '444'],
      ['10-4-3', '3'], // left-associative
      ['2**3**2', '512'], // right-associative: 2**9
      ['2^10', '1024'],
      ['-2**2', '-4'], // as in Python: -(2**2)
      ['(-2)**2', '4'],
      ['--3', '3'],
      ['7 % 3', '1'],
      ['-7 % 3', '-1'],
      ['1/3', '0.3333333333'],
      ['0.1+0.2', '0.3'],
      ['5*.5', '2.5'],
      ['48/2', '24'],
      ['2**-1', '0.5'],
      [' 1 + 1 ', '2'],
      ['0*-5', '0'], // minus zero prints as 0
      ['999999999999999+1', '1000000000000000'],
    ];
    for (const [expr, want] of cases) expect([expr, calculate(expr)]).toEqual([expr, want]);
  });

  it('formats numbers canonically', () => {
    expect(formatNumber(444)).toBe('444');
    expect(formatNumber(-0)).toBe('0');
    expect(formatNumber(2 / 3)).toBe('0.6666666667');
    expect(formatNumber(123456.7890123)).toBe('123456.789');
    expect(formatNumber(1e-7)).toBe('1e-7');
  });

  it('answers errors for bad syntax, division by zero and overflow', () => {
    expect(calculate('1/0')).toBe('error: division by zero');
    expect(calculate('5 % 0')).toBe('error: division by zero');
    expect(calculate('0**-1')).toBe('error: division by zero');
    expect(calculate('10**16')).toMatch(/^error: overflow/);
    expect(calculate('99999999*99999999')).toMatch(/^error: overflow/);
    expect(calculate('9'.repeat(17))).toMatch(/^error: overflow/);
    expect(calculate('(-8)**0.5')).toMatch(/^error: not a real number/);
    expect(calculate('')).toBe('error: empty expression');
    expect(calculate('2+')).toBe('error: syntax: the expression ends too early');
    expect(calculate('(2+3')).toBe('error: syntax: missing ")"');
    expect(calculate('2 3')).toBe('error: syntax: unexpected number 3 at position 3');
    expect(calculate('1e5')).toBe('error: syntax: unexpected "e" at position 2');
    expect(calculate('1,000')).toMatch(/^error: syntax/);
    expect(calculate('1+'.repeat(MAX_INPUT_CHARS) + '1')).toMatch(/^error: input too long/);
    expect(calculate('('.repeat(40) + '1' + ')'.repeat(40))).toMatch(/^error: too deeply nested/);
    expect(calculate('-'.repeat(60) + '1')).toMatch(/^error: too deeply nested/);
  });

  it('never runs code: JavaScript is a syntax error answer', () => {
    // if any of these were evaluated, the test process would exit or a global would change
    const g = globalThis as Record<string, unknown>;
    for (const src of ['process.exit()', 'globalThis.pwned=1', 'this.constructor.constructor("return 1")()', 'require("fs")', '1;2']) {
      const r = evaluate(src);
      expect(r.ok).toBe(false);
      expect(r.ok ? '' : r.error).toMatch(/^error: syntax/);
    }
    expect(g.pwned).toBeUndefined();
    expect(calculate('process.exit()')).toBe('error: syntax: unexpected "p" at position 1');
  });
});

describe('ToolRegistry', () => {
  it('dispatches name(args), answers errors for unknown tools and malformed calls', () => {
    const reg = defaultToolRegistry();
    const echo: Tool = { name: 'echo', description: 'repeats its input', run: (a) => `[${a}]` };
    const boom: Tool = { name: 'boom', description: 'always throws', run: () => { throw new Error('kaput'); } };
    reg.register(echo).register(boom);
    expect(reg.names()).toEqual(['calc', 'echo', 'boom']);
    expect(reg.call('calc(2+3*4)')).toBe('14');
    expect(reg.call(' calc( (1+2) ) ')).toBe('3');
    expect(reg.call('echo(a(b)c)')).toBe('[a(b)c]'); // args run to the LAST ")"
    expect(reg.call('calc(1/0)')).toBe('error: division by zero');
    expect(reg.call('python(1+1)')).toBe('error: unknown tool "python" (known: calc, echo, boom)');
    expect(reg.call('2+3')).toMatch(/^error: a tool call looks like name\(arguments\)/);
    expect(reg.call('boom()')).toBe('error: boom failed: kaput');
    expect(() => reg.register(echo)).toThrow(/already registered/);
  });
});

describe('toolHook and parseAssistantOutput', () => {
  let tok: Tokenizer;
  let id: (name: string) => number;
  beforeAll(async () => {
    tok = await trainTokenizer(['calc the answer is 444 and 37*12 = 444. Let me check. '.repeat(30)], { vocabSize: 300 });
    id = (n) => tok.specialId(n);
  });

  it('forces <|tool_result_start|> result <|tool_result_end|> only after <|tool_call_end|>', () => {
    const hook = toolHook(tok, defaultToolRegistry());
    const prefix = [...tok.encodeOrdinary('Let me check.'), id(SPECIALS.toolCallStart), ...tok.encodeOrdinary('calc(37*12)')];
    // every prefix before the end marker: nothing to force
    for (let n = 0; n <= prefix.length; n++) expect(hook(0, prefix.slice(0, n))).toBeUndefined();
    const forced = hook(3, [...prefix, id(SPECIALS.toolCallEnd)]);
    expect(forced).toEqual([id(SPECIALS.toolResultStart), ...tok.encodeOrdinary('444'), id(SPECIALS.toolResultEnd)]);
    // after the result and more text, the hook is quiet again until the next call ends
    const after = [...prefix, id(SPECIALS.toolCallEnd), ...forced!, ...tok.encodeOrdinary('The answer is 444.')];
    expect(hook(0, after)).toBeUndefined();
    // a second call in the same reply uses its own text, not the first call's
    const second = [...after, id(SPECIALS.toolCallStart), ...tok.encodeOrdinary('calc(1/0)'), id(SPECIALS.toolCallEnd)];
    expect(tok.decode(hook(0, second)!)).toBe('<|tool_result_start|>error: division by zero<|tool_result_end|>');
    // an end marker with no start since the last result is answered with an error
    const stray = [...after, id(SPECIALS.toolCallEnd)];
    expect(tok.decode(hook(0, stray)!)).toMatch(/^<\|tool_result_start\|>error: .*without.*<\|tool_result_end\|>$/);
  });

  it('parses a generated reply back into the parts renderConversation rendered', () => {
    const parts = [
      { type: 'text', text: 'Let me check.' },
      { type: 'tool_call', text: 'calc(37*12)' },
      { type: 'tool_result', text: '444' },
      { type: 'text', text: 'The answer is 444.' },
    ] as const;
    const r = renderConversation(tok, [{ role: 'user', content: 'q' }, { role: 'assistant', content: [...parts] }]);
    const start = r.ids.indexOf(id(SPECIALS.assistantStart));
    const reply = r.ids.slice(start); // <|assistant_start|> ... <|assistant_end|>
    expect(parseAssistantOutput(tok, reply)).toEqual(parts);
    // the end marker stops parsing; anything after it is not part of the reply
    expect(parseAssistantOutput(tok, [...reply.slice(1), ...tok.encodeOrdinary('junk')])).toEqual(parts);
    expect(replyText(parseAssistantOutput(tok, reply))).toBe('Let me check.The answer is 444.');
    // a call cut off by the token limit keeps what it has
    const cut = [...tok.encodeOrdinary('Hm'), id(SPECIALS.toolCallStart), ...tok.encodeOrdinary('calc(1+')];
    expect(parseAssistantOutput(tok, cut)).toEqual([{ type: 'text', text: 'Hm' }, { type: 'tool_call', text: 'calc(1+' }]);
    expect(parseAssistantOutput(tok, [])).toEqual([]);
  });
});
