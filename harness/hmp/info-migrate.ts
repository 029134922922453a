// HMP `info migrate` text, parsed into one shape (migration-info.ts) for both layouts QEMU has
// printed:
//  - "flat" (QEMU <= 10.0): `globals:` block, then `Migration status: ...`, `transferred ram: N kbytes`...
//  - "sectioned" (QEMU >= 10.1): `Status:\t\t...`, `Time (ms):\t\ttotal=...`, `RAM info:` sub-lines,
//    sizes from size_to_str(); `Globals:` and the rest only with `info migrate -a`.
// The parser is strict on purpose: a line it does not fully understand goes to `unknownLines`, so a
// test notices when QEMU prints something new instead of silently reading past it.

import { parseFlat } from "./flat-layout.ts";
import type { HmpMigrationInfo, InfoMigrateFormat } from "./migration-info.ts";
import { parseSectioned } from "./sectioned-layout.ts";

/** Which layout `text` is in, judged from the text alone. */
export function detectInfoMigrateFormat(text: string): InfoMigrateFormat {
  const lines = splitLines(text);
  if (lines.every((l) => l.trim() === "")) return "empty";
  // The flat layout always starts with its globals block; `Migration status:` backs that up.
  if (lines.some((l) => l === "globals:" || l.startsWith("Migration status: "))) return "flat";
  return "sectioned";
}

/** Parse `info migrate` (or `info migrate -a`) text from any QEMU since 7.2. */
export function parseInfoMigrate(text: string): HmpMigrationInfo {
  const format = detectInfoMigrateFormat(text);
  const info: HmpMigrationInfo = { format, unknownLines: [] };
  const lines = splitLines(text);
  if (format === "flat") parseFlat(lines, info);
  else if (format === "sectioned") parseSectioned(lines, info);
  return info;
}

function splitLines(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === "") lines.pop();
  return lines;
}
