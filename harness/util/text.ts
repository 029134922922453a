// Text helpers for messages and reports.

/** A command line as a shell would need it typed: only arguments with special characters quoted. */
export function quoteCommandLine(argv: readonly string[]): string {
  return argv
    .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`))
    .join(" ");
}

/** Every line of `text` (trailing blank lines dropped) behind `prefix`. */
export function indent(text: string, prefix = "    "): string {
  return text
    .trimEnd()
    .split("\n")
    .map((l) => prefix + l)
    .join("\n");
}

/** `0x`-prefixed hexadecimal, for addresses and offsets in messages. */
export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** A value as JSON for a message, cut to 120 characters. */
export function preview(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}
