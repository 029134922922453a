// A malformed scenario is a compile error, not a runtime surprise: each @ts-expect-error below
// must stay an error, or `npm run typecheck` fails. The runtime part checks the same scenarios'
// well-formed twins pass through pairOptions as declared.

import { describe, expect, test } from "vitest";
import { pairOptions } from "./run.ts";
import type { Scenario } from "./scenario.ts";

const where = { binary: "qemu-system-x86_64", accel: "tcg" as const };

const malformed: Scenario[] = [
  // @ts-expect-error a misspelt capability
  { capabilities: { both: { "postcopy-rma": true } } },
  // @ts-expect-error a parameter with the wrong JSON type
  { parameters: { source: { "max-bandwidth": "fast" } } },
  // @ts-expect-error an outcome QEMU has no name for
  { expect: { status: "succeeded" } },
  // @ts-expect-error a qmp-error outcome without its class
  { expect: { status: "qmp-error", command: "migrate", desc: /x/ } },
  // @ts-expect-error a transport that does not exist (yet)
  { transport: { kind: "rdma" } },
  // @ts-expect-error hold without a number of passes
  { hold: {} },
];

describe("Scenario type", () => {
  test("well-formed scenarios map onto the pair's options unchanged", () => {
    expect(malformed).toHaveLength(6);
    const o = pairOptions(
      {
        memoryMiB: 64,
        transport: { kind: "unix" },
        machineType: "pc-i440fx-7.2",
        binaries: { destination: "/opt/qemu" },
      },
      where,
    );
    expect(o).toMatchObject({
      binary: "qemu-system-x86_64",
      accel: "tcg",
      memoryMiB: 64,
      transport: { kind: "unix" },
      machineType: "pc-i440fx-7.2",
      destination: { binary: "/opt/qemu" },
      keepQemuConvergenceDefaults: true,
    });
    expect(o.source).toBeUndefined();
  });
});
