// Documents from a file the user dropped on the page: the browser's small copy of the rules
// in src/data/documents.ts (which reads from disk and so is Node-only).
//   .txt / .md  split on `<|endoftext|>` when the text contains it (the TinyStories
//               convention), else on blank lines;
//   .jsonl      one JSON object per line, the document is its string field "text".
// Mistakes are UserErrors naming the file (and the 1-based line for JSONL), shown in the page.
import { UserError } from '../../src/util/errors.ts';

const SEPARATOR = '<|endoftext|>';

export function parseDocuments(name: string, text: string): string[] {
  const ext = name.toLowerCase().replace(/^.*(\.[^.]+)$/, '$1');
  let docs: string[];
  if (ext === '.jsonl') {
    docs = [];
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      let obj: unknown;
      try {
        obj = JSON.parse(line);
      } catch {
        throw new UserError(`${name}: line ${i + 1} is not valid JSON`);
      }
      const field = (obj as { text?: unknown } | null)?.text;
      if (typeof field !== 'string') throw new UserError(`${name}: line ${i + 1} has no string field "text"`);
      docs.push(field);
    });
  } else if (ext === '.txt' || ext === '.md') {
    docs = text.includes(SEPARATOR) ? text.split(SEPARATOR) : text.split(/\n\s*\n/);
  } else {
    throw new UserError(`${name}: unsupported file type "${ext}" (drop a .txt, .md or .jsonl file)`);
  }
  docs = docs.map((d) => d.trim()).filter((d) => d.length > 0);
  if (docs.length < 2) throw new UserError(`${name}: found ${docs.length} document(s); need at least 2 (one is held out for validation)`);
  return docs;
}
