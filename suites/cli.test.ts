// qemu-migtest migrate as a new user meets it: the real command, run as a process, on real QEMU.
// Every way it can go wrong says what went wrong, and nothing hangs.

import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { describe, expect, inject } from "vitest";
import { test, where } from "./migration-test.ts";

const CLI = fileURLToPath(new URL("../bin/qemu-migtest.mjs", import.meta.url));
// The command's own behaviour does not depend on the target: x86_64 binaries only.
const binaries = inject("binaries").filter((b) => b.arch === "x86_64");
const newest = [...binaries].sort((a, b) =>
  b.version.localeCompare(a.version, undefined, { numeric: true }),
)[0];
const oldest = [...binaries].sort((a, b) =>
  a.version.localeCompare(b.version, undefined, { numeric: true }),
)[0];

/** The command, bounded in time: a hang is a failure of its own, never a stuck test run. */
async function migrate(args: string[], env: Record<string, string> = {}) {
  const r = await execa("node", [CLI, "migrate", ...args], {
    reject: false,
    all: true,
    timeout: 90_000,
    env: { QEMU_MIGTEST_RUN_DIR: inject("runDir"), ...env },
  });
  expect(r.timedOut, `qemu-migtest migrate ${args.join(" ")} hung:\n${r.all}`).toBe(false);
  return { code: r.exitCode, out: r.all ?? "" };
}

describe.skipIf(!newest)("qemu-migtest migrate, the command itself", () => {
  const b = newest as NonNullable<typeof newest>;
  const on = ["--binary", b.path, "--accel", b.accelRequest];

  // Two whole migrations through the command: nightly (full) only; the smoke set keeps the
  // quick refusals.
  test(`--progress none silences progress, not the summary, the verdicts or a failure ${where(b)}`, {
    tags: ["full"],
  }, async () => {
    const ok = await migrate([...on, "--progress", "none"]);
    expect(ok.code, ok.out).toBe(0);
    expect(ok.out).toMatch(/migration over tcp:127\.0\.0\.1:\d+ completed in \d+ ms/);
    expect(ok.out).toMatch(/^PASS both sides completed$/m);
    expect(ok.out).toMatch(/^RAM check: RAM check OK/m);
    expect(ok.out).not.toMatch(/^progress:/m);
    const bad = await migrate([...on, "--progress", "none", "--capability", "no-such=on"]);
    expect(bad.code, bad.out).toBe(1);
    expect(bad.out).toMatch(
      /migration FAILED: required: QEMU \S+ \(source\) has no migration capability "no-such" \(query-migrate-capabilities\).*it knows the capabilities .*xbzrle/,
    );
  });

  test(`a results dir that cannot be written is refused before anything starts, and nothing hangs ${where(b)}`, async () => {
    const r = await migrate([...on, "--results", "/proc/qemu-migtest-nope"]);
    expect(r.code, r.out).toBe(2);
    expect(r.out).toContain(
      "--results /proc/qemu-migtest-nope: cannot write there (ENOENT); choose a directory you can create and write",
    );
    expect(r.out).not.toMatch(/source: QEMU/);
  });

  test(`a QEMU_MIGTEST_RUN_DIR that does not exist is named, with what to do ${where(b)}`, async () => {
    const r = await migrate(on, { QEMU_MIGTEST_RUN_DIR: "/does/not/exist" });
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain(
      "QEMU_MIGTEST_RUN_DIR=/does/not/exist: no such directory; create it, or unset QEMU_MIGTEST_RUN_DIR",
    );
  });

  test(`a negative value for an unsigned parameter is reported as QEMU's exact wrapped uint64 ${where(b)}`, async () => {
    const r = await migrate([...on, "--progress", "none", "--parameter", "max-bandwidth=-5"]);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain(
      "parameter max-bandwidth was set to -5, which QEMU took as 18446744073709551611 (2^64 -5: it wraps a negative value of an unsigned parameter)",
    );
  });

  test(`a migration that cannot converge stops early and says why, naming the defaults it replaced ${where(b)}`, {
    tags: ["full"],
  }, async () => {
    // 11 MiB dirtied at 64 MiB/s against 32 MB/s and a 1 ms limit: every pass resends it all.
    const r = await migrate([
      ...on,
      ...["--progress", "none", "--memory-mib", "16", "--dirty-rate", "64"],
      ...["--max-bandwidth", "32000000", "--downtime-limit", "1", "--timeout-s", "80"],
    ]);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain(
      "note: max-bandwidth 32000000, downtime-limit 1 replaces the harness's converging defaults (max-bandwidth 1073741824, downtime-limit 30000)",
    );
    expect(r.out).toMatch(
      /migration FAILED: .*the migration is not converging: remaining was \d+ bytes at pass \d+ and its lowest over the next 5 passes was \d+ bytes.*expected downtime \d+ ms against downtime-limit 1 ms/,
    );
  });
});

describe.skipIf(!newest || !oldest || newest.path === oldest.path)(
  "qemu-migtest migrate across versions",
  () => {
    const n = newest as NonNullable<typeof newest>;
    const o = oldest as NonNullable<typeof oldest>;
    for (const [src, dst] of [
      [n, o],
      [o, n],
    ] as const) {
      test(`${src.label} -> ${dst.label} picks the newest machine type both offer and completes [${src.label} -> ${dst.label}, ${src.arch}, ${src.accel}]`, async () => {
        const r = await migrate([
          ...["--source-binary", src.path, "--destination-binary", dst.path],
          ...["--accel", src.accelRequest, "--progress", "none"],
        ]);
        expect(r.code, r.out).toBe(0);
        expect(r.out).toMatch(
          /^machine type: pc-i440fx-\d+\.\d+ \(the newest versioned type both QEMUs offer; "pc" means a different one on each; --machine-type overrides\)$/m,
        );
        expect(r.out).toMatch(/^RAM check: RAM check OK/m);
      });
    }
  },
);
