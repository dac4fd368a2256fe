// The dependency rule (.dependency-cruiser.cjs, README "Layout"): src/ imports point downward only
// and form no cycle. The second test proves the check can fail, on a tiny tree with one
// upward import and one cycle.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from './tmp.ts';

const root = resolve(import.meta.dirname, '..');
const bin = join(root, 'node_modules/.bin/depcruise');
const config = join(root, '.dependency-cruiser.cjs');

function cruise(cwd: string): { ok: boolean; out: string } {
  try {
    const out = execFileSync(bin, ['src', '--config', config, '--output-type', 'err'], { cwd, encoding: 'utf8', stdio: 'pipe' });
    return { ok: true, out };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return { ok: false, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

describe('dependency rule', () => {
  it('src/ has no upward import and no cycle', () => {
    const r = cruise(root);
    expect(r.out).toContain('no dependency violations');
    expect(r.ok).toBe(true);
  });

  it('catches an upward import and a cycle', () => {
    const dir = tempDir('deps');
    for (const d of ['tensor', 'cli', 'model']) mkdirSync(join(dir, 'src', d), { recursive: true });
    writeFileSync(join(dir, 'src/tensor/a.ts'), "import { b } from '../cli/b.ts';\nexport const a = b;\n");
    writeFileSync(join(dir, 'src/cli/b.ts'), 'export const b = 1;\n');
    writeFileSync(join(dir, 'src/model/x.ts'), "import { y } from './y.ts';\nexport const x = () => y;\n");
    writeFileSync(join(dir, 'src/model/y.ts'), "import { x } from './x.ts';\nexport const y = () => x;\n");
    writeFileSync(join(dir, 'tsconfig.json'), '{"compilerOptions":{"allowImportingTsExtensions":true,"module":"esnext","moduleResolution":"bundler"}}');
    const r = cruise(dir);
    expect(r.ok).toBe(false);
    expect(r.out).toContain('no-upward-from-tensor');
    expect(r.out).toContain('no-circular');
  });
});
