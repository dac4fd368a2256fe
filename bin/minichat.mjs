#!/usr/bin/env node
// The `minichat` command. The sources are TypeScript; tsx's loader lets Node run them
// directly, so there is no build step between editing a file and running it.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
await main(process.argv);
