// One scenario against the floor: `npm run bench -- --scenario [--binary SPEC] [--accel tcg|kvm]
// [--pairs N] [--dirty-rate MiB/s]`. Each round runs the harness's scenario (launch a pair, a
// 128 MiB guest dirtying at the set rate, live tcp migration, liveness, full RAM check, teardown)
// and the bare script beside it (scripts/bare-migration.ts), alternating A B A B, and prints both
// medians and their ratio. A benchmark, not a test: it prints figures.

import { integer, oneOf, parseFlags } from "../harness/cli/args.ts";
import { resolveQemuBinary } from "../harness/qemu/matrix.ts";
import { runScenario } from "../harness/scenario/run.ts";
import { bareMigration } from "./bare-migration.ts";

const MiB = 1024 * 1024;
const MEMORY_MIB = 128;
const RANGE_END_MIB = MEMORY_MIB - 16;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export async function main(argv: string[]): Promise<number> {
  const { values: v } = parseFlags("bench --scenario", argv, {
    binary: { type: "string" },
    accel: { type: "string" },
    pairs: { type: "string" },
    "dirty-rate": { type: "string" },
  });
  const binary = (await resolveQemuBinary(v.binary ?? "qemu-system-x86_64")).path;
  const accel = oneOf("--accel", v.accel, ["tcg", "kvm"] as const, "tcg");
  const pairs = integer("--pairs", v.pairs) ?? 5;
  const rate = Number(v["dirty-rate"] ?? 32);
  const scenarioMs: number[] = [];
  const bareMs: number[] = [];
  for (let i = 0; i < pairs; i++) {
    const t0 = performance.now();
    const { pair, result } = await runScenario(
      {
        memoryMiB: MEMORY_MIB,
        guest: { kind: "bootblock", rangeEndMiB: RANGE_END_MIB, dirtyRateMiBps: rate },
        transport: { kind: "tcp" },
      },
      { binary, accel },
    );
    const problems = await pair.close();
    const a = performance.now() - t0;
    if (!result.ram?.check.ok || problems.length > 0) {
      throw new Error(
        `scenario round ${i + 1}: ${result.ram?.check.summary} ${problems.join("; ")}`,
      );
    }
    const b = await bareMigration({
      binary,
      accel,
      memoryMiB: MEMORY_MIB,
      bootblock: {
        rangeEnd: RANGE_END_MIB * MiB,
        dirtyRatePagesPerSecond: Math.round((rate * MiB) / 4096),
      },
    });
    scenarioMs.push(a);
    bareMs.push(b);
    console.log(`round ${i + 1}: scenario ${a.toFixed(0)} ms, bare ${b.toFixed(0)} ms`);
  }
  const ms = median(scenarioMs);
  const mb = median(bareMs);
  console.log(
    `\nQEMU ${binary} (${accel}), ${MEMORY_MIB} MiB guest dirtying ${rate} MiB/s, ${pairs} pairs A B A B:`,
  );
  console.log(
    `  scenario (launch, migrate, liveness, RAM check, teardown)  median ${ms.toFixed(0)} ms`,
  );
  console.log(
    `  bare QMP script (launch, migrate, poll, quit)              median ${mb.toFixed(0)} ms`,
  );
  console.log(`  ratio ${(ms / mb).toFixed(2)}x`);
  return 0;
}
