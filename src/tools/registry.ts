// The tool registry: the tools a model may call, and how a call's text is dispatched.
//
// Inside an assistant turn the model writes a call as plain text between two specials:
//
//   <|tool_call_start|>calc(37*12)<|tool_call_end|>
//
// The text is `name(args)`: a tool name, then everything between the first "(" and the last
// ")" handed to that tool as one string. Each tool parses its own arguments (the calculator
// reads an expression), so the registry stays tiny and knows nothing about any one tool.
//
// Like a tool's own failures, a malformed call or an unknown tool is not an exception but an
// answer starting with "error: ": the model reads it as the tool result and can recover, and
// a bad generation never crashes the engine. (Pure: no Node imports.)

/** A tool the model can call: `run` receives the text inside the parentheses. */
export interface Tool {
  /** The name the model writes before "(": letters, digits and "_", starting with a letter. */
  name: string;
  /** One line for docs and prompts. */
  description: string;
  /** Run the tool; the returned text is pasted into the conversation as the result. */
  run(args: string): string;
}

const NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
// name, "(", anything (newlines too), ")" at the very end; spaces around the whole are allowed
const CALL = /^\s*([A-Za-z][A-Za-z0-9_]*)\(([\s\S]*)\)\s*$/;

export class ToolRegistry {
  private readonly tools = new Map<string, Tool>();

  /** Add a tool; a second tool with the same name is a mistake in the caller's setup. */
  register(t: Tool): this {
    if (!NAME.test(t.name)) throw new Error(`ToolRegistry: bad tool name "${t.name}" (letters, digits and _, starting with a letter)`);
    if (this.tools.has(t.name)) throw new Error(`ToolRegistry: a tool named "${t.name}" is already registered`);
    this.tools.set(t.name, t);
    return this;
  }

  /** The registered tool names, in registration order. */
  names(): string[] {
    return [...this.tools.keys()];
  }

  get(name: string): Tool | undefined {
    return this.tools.get(name);
  }

  /** Run a call written as `name(args)`; always returns text (the result or "error: ..."). */
  call(text: string): string {
    const m = CALL.exec(text);
    if (!m) return `error: a tool call looks like name(arguments), e.g. calc(2+3), got "${clip(text)}"`;
    const tool = this.tools.get(m[1]);
    if (!tool) return `error: unknown tool "${m[1]}" (known: ${this.names().join(', ') || 'none'})`;
    try {
      return tool.run(m[2]);
    } catch (e) {
      // a tool should answer errors itself; if one throws anyway, the model still gets a line
      return `error: ${tool.name} failed: ${(e as Error).message}`;
    }
  }
}

/** Keep error messages short when the model wrote something long. */
const clip = (s: string) => (s.length > 40 ? s.slice(0, 40) + '...' : s);
