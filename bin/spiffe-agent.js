#!/usr/bin/env node
// Runs the spiffe-agent CLI: the compiled build when present, else the TypeScript sources
// (Node 24 strips types natively).
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/agent/cli/main.js', import.meta.url);
await import(existsSync(compiled) ? compiled.href : new URL('../src/agent/cli/main.ts', import.meta.url).href);
