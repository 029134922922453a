import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { AccelError } from "./accel.ts";
import { hostQemuArch } from "./arch.ts";
import { formatUnavailable, selectBinaries } from "./binaries-under-test.ts";
import { errorOf, scratchEnv, writeFakeQemu as writeFake } from "./fake-qemu.test-helpers.ts";
import { matrixWrapperPath, QemuResolveError } from "./matrix.ts";

// --- selection: spec x target ---------------------------------------------------------------

/** 7.2 on x86_64 (the PATH command), 10.0 on both, 11.1 on x86_64 only, 7.2 on aarch64. */
async function matrixFakes(s: Awaited<ReturnType<typeof scratchEnv>>) {
  await writeFake(join(s.root, "bin", "qemu-system-x86_64"), "7.2.22", "x86_64");
  await writeFake(matrixWrapperPath("7.2", "aarch64", s.env), "7.2.22", "aarch64");
  await writeFake(matrixWrapperPath("10.0", "x86_64", s.env), "10.0.2", "x86_64");
  await writeFake(matrixWrapperPath("10.0", "aarch64", s.env), "10.0.2", "aarch64");
  await writeFake(matrixWrapperPath("11.1", "x86_64", s.env), "11.1.3", "x86_64");
}

const cells = (list: Array<{ spec: string; arch: string }>) =>
  list.map((b) => `${b.spec}/${b.arch}`);

describe("selectBinaries", () => {
  test("default: every installed target, by target then spec; a missing cell is reported, not silent", async () => {
    const s = await scratchEnv();
    try {
      await matrixFakes(s);
      const sel = await selectBinaries(s.env);
      expect(sel.arches).toEqual(["x86_64", "aarch64"]);
      expect(sel.archesExplicit).toBe(false);
      expect(cells(sel.binaries)).toEqual([
        "7.2/x86_64",
        "10.0/x86_64",
        "11.1/x86_64",
        "7.2/aarch64",
        "10.0/aarch64",
      ]);
      expect(sel.binaries.map((b) => b.label)).toEqual(["7.2", "10.0", "11.1", "7.2", "10.0"]);
      expect(sel.binaries[3]).toMatchObject({
        spec: "7.2",
        path: matrixWrapperPath("7.2", "aarch64", s.env),
        version: "7.2.22",
        arch: "aarch64",
        accel: "tcg",
      });
      expect(sel.unavailable).toEqual([
        {
          spec: "11.1",
          arch: "aarch64",
          reason: expect.stringMatching(
            /^QEMU 11\.1 \(aarch64\) is not installed .*; run scripts\/install-qemu-matrix 11\.1$/,
          ),
        },
      ]);
      expect(formatUnavailable(sel.unavailable)).toMatch(
        /^not covered: 11\.1 on aarch64: QEMU 11\.1 \(aarch64\) is not installed/,
      );
    } finally {
      await s.done();
    }
  });

  test("QEMU_MIGTEST_ARCHES naming a target a matrix name is missing on is an error", async () => {
    const s = await scratchEnv();
    try {
      await matrixFakes(s);
      const e = await errorOf(selectBinaries({ ...s.env, QEMU_MIGTEST_ARCHES: "aarch64,x86_64" }));
      expect(e).toBeInstanceOf(QemuResolveError);
      expect(e.message).toMatch(
        /^QEMU 11\.1 \(aarch64\) is not installed .*; run scripts\/install-qemu-matrix 11\.1$/,
      );
      // The default specs are those installed on the named targets: 11.1 is not asked for here.
      const arm = await selectBinaries({ ...s.env, QEMU_MIGTEST_ARCHES: "aarch64" });
      expect(cells(arm.binaries)).toEqual(["7.2/aarch64", "10.0/aarch64"]);
      expect(arm.unavailable).toEqual([]);
      const x86 = await selectBinaries({ ...s.env, QEMU_MIGTEST_ARCHES: "x86_64" });
      expect(cells(x86.binaries)).toEqual(["7.2/x86_64", "10.0/x86_64", "11.1/x86_64"]);
      expect(x86).toMatchObject({ arches: ["x86_64"], archesExplicit: true, unavailable: [] });
      const e2 = await errorOf(selectBinaries({ ...s.env, QEMU_MIGTEST_ARCHES: "arm64" }));
      expect(e2.message).toMatch(/unknown architecture "arm64"; valid: x86_64, aarch64/);
    } finally {
      await s.done();
    }
  });

  test("a path runs on its own target, filtered by QEMU_MIGTEST_ARCHES (reported when left out)", async () => {
    const s = await scratchEnv();
    try {
      await matrixFakes(s);
      const arm = join(s.root, "opt", "qemu-system-aarch64");
      await writeFake(arm, "11.1.3", "aarch64");
      const env = { ...s.env, QEMU_MIGTEST_BINARIES: `${arm},10.0` };
      const all = await selectBinaries(env);
      expect(cells(all.binaries)).toEqual(["10.0/x86_64", `${arm}/aarch64`, "10.0/aarch64"]);
      expect(all.binaries[1]).toMatchObject({ label: "11.1", arch: "aarch64", path: arm });
      expect(all.unavailable).toEqual([]);
      const x86 = await selectBinaries({ ...env, QEMU_MIGTEST_ARCHES: "x86_64" });
      expect(cells(x86.binaries)).toEqual(["10.0/x86_64"]);
      expect(x86.unavailable).toEqual([
        {
          spec: arm,
          arch: "aarch64",
          reason: `${arm} emulates aarch64, which QEMU_MIGTEST_ARCHES=x86_64 leaves out`,
        },
      ]);
    } finally {
      await s.done();
    }
  });

  test("a matrix name QEMU_MIGTEST_BINARIES names and no target has is an error", async () => {
    const s = await scratchEnv();
    try {
      await matrixFakes(s);
      // 11.1 is missing on aarch64 only: reported, not an error.
      const sel = await selectBinaries({ ...s.env, QEMU_MIGTEST_BINARIES: "11.1" });
      expect(cells(sel.binaries)).toEqual(["11.1/x86_64"]);
      expect(cells(sel.unavailable)).toEqual(["11.1/aarch64"]);
      const e = await errorOf(
        selectBinaries({
          ...s.env,
          QEMU_MIGTEST_BINARIES: "11.1",
          QEMU_MIGTEST_CACHE: "/nonexistent",
        }),
      );
      expect(e.message).toMatch(/QEMU 11\.1 is not installed/);
      // Named on a named target: an error too.
      const e3 = await errorOf(
        selectBinaries({ ...s.env, QEMU_MIGTEST_BINARIES: "11.1", QEMU_MIGTEST_ARCHES: "aarch64" }),
      );
      expect(e3.message).toMatch(/^QEMU 11\.1 \(aarch64\) is not installed/);
    } finally {
      await s.done();
    }
  });

  test.skipIf(hostQemuArch() !== "x86_64")(
    "QEMU_MIGTEST_ACCEL=kvm: another target than the host's is left out by default, an error when named",
    async () => {
      const s = await scratchEnv();
      try {
        await writeFake(matrixWrapperPath("7.2", "aarch64", s.env), "7.2.22", "aarch64");
        const env = { ...s.env, QEMU_MIGTEST_ACCEL: "kvm" };
        const sel = await selectBinaries(env);
        expect(sel.binaries).toEqual([]);
        expect(sel.unavailable).toEqual([
          {
            spec: "7.2",
            arch: "aarch64",
            reason:
              "QEMU_MIGTEST_ACCEL=kvm, but KVM runs only x86_64 guests on this x86_64 host; QEMU_MIGTEST_ACCEL=tcg (or auto) covers it",
          },
        ]);
        const e = await errorOf(selectBinaries({ ...env, QEMU_MIGTEST_ARCHES: "aarch64" }));
        expect(e).toBeInstanceOf(AccelError);
        expect(e.message).toMatch(
          /^QEMU 7\.2 \(aarch64\): accelerator kvm was requested for a qemu-system-aarch64, but KVM runs only x86_64 guests on this x86_64 host; set QEMU_MIGTEST_ACCEL=tcg .*QEMU_MIGTEST_ARCHES=x86_64/,
        );
        // auto: TCG, saying why.
        const auto = await selectBinaries({ ...s.env, QEMU_MIGTEST_ACCEL: "auto" });
        expect(auto.binaries[0]).toMatchObject({
          arch: "aarch64",
          accel: "tcg",
          accelReason: "auto chose tcg: KVM runs only x86_64 guests on this x86_64 host",
        });
      } finally {
        await s.done();
      }
    },
  );
});
