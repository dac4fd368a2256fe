// The dependency rule (README, "Layout"), checked by dependency-cruiser (npm run deps, and
// test/deps.test.ts in npm test):
//
//   cli, serve  →  train, rl, eval  →  model, optim, tokenizer, data, io, tools, tasks  →  tensor  →  backend
//
// A module may import from its own layer or any layer below it, never from above, and no
// import cycle is allowed. util/ (errors) sits below everything.
const layers = [
  ['util'],
  ['backend'],
  ['tensor'],
  ['model', 'optim', 'tokenizer', 'data', 'io', 'tools', 'tasks'],
  ['train', 'rl', 'eval'],
  ['cli', 'serve'],
];
const dir = (names) => `^src/(${names.join('|')})/`;
const forbidden = [
  {
    name: 'no-circular',
    severity: 'error',
    comment: 'An import cycle: split the shared part into a lower module.',
    from: {},
    to: { circular: true },
  },
];
for (let i = 0; i < layers.length - 1; i++) {
  const above = layers.slice(i + 1).flat();
  forbidden.push({
    name: `no-upward-from-${layers[i].join('-')}`,
    severity: 'error',
    comment: `${layers[i].join(', ')} may not import from a higher layer (${above.join(', ')}).`,
    from: { path: dir(layers[i]) },
    to: { path: dir(above) },
  });
}
module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|web/dist)' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.mjs', '.js'] },
  },
};
