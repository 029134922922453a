#!/usr/bin/env node
// Runs the TypeScript CLI (harness/cli/main.ts) through tsx's loader; no build step.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../harness/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
