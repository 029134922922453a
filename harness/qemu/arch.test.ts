import { join } from "node:path";
import { execa } from "execa";
import { dir } from "tmp-promise";
import { describe, expect, test } from "vitest";
import { AccelError } from "./accel.ts";
import {
  hostQemuArch,
  isQemuArch,
  QEMU_ARCHES,
  qemuSystemCommand,
  sortArches,
  supportedArchesText,
} from "./arch.ts";
import { formatUnavailable, selectBinaries } from "./binaries-under-test.ts";
import { probeQemuBinary } from "./binary.ts";
import { writeFakeQemu as writeFake } from "./fake-qemu.test-helpers.ts";
import {
  findOnPath,
  installedMatrix,
  matrixWrapperPath,
  QemuResolveError,
  queryTargetArch,
  resolveQemuBinary,
} from "./matrix.ts";

describe("arch.ts", () => {
  test("the supported targets, x86_64 first, and their commands", () => {
    expect(QEMU_ARCHES).toEqual(["x86_64", "aarch64"]);
    expect(QEMU_ARCHES.map(qemuSystemCommand)).toEqual([
      "qemu-system-x86_64",
      "qemu-system-aarch64",
    ]);
    expect(supportedArchesText()).toBe("x86_64 and aarch64");
    expect(isQemuArch("aarch64")).toBe(true);
    expect(isQemuArch("arm64")).toBe(false);
    expect(isQemuArch("ppc64")).toBe(false);
    expect(sortArches(["aarch64", "x86_64", "aarch64"])).toEqual(["x86_64", "aarch64"]);
  });

  test("the host's arch in QEMU's names, from Node's", () => {
    expect(hostQemuArch("x64")).toBe("x86_64");
    expect(hostQemuArch("arm64")).toBe("aarch64");
    expect(hostQemuArch("ppc64")).toBeUndefined();
    expect(hostQemuArch("ia32")).toBeUndefined();
    expect(hostQemuArch()).toBe(hostQemuArch(process.arch));
  });
});

/** A scratch cache and a PATH with no QEMU on it, so resolution cannot find the real ones. */
async function scratchEnv() {
  const d = await dir({ unsafeCleanup: true, prefix: "qa-test-" });
  await execa("mkdir", ["-p", join(d.path, "bin")]);
  const env: NodeJS.ProcessEnv = {
    HOME: d.path,
    QEMU_MIGTEST_CACHE: join(d.path, "cache"),
    PATH: join(d.path, "bin"),
    QEMU_MIGTEST_ACCEL: "tcg",
  };
  return { env, root: d.path, done: d.cleanup };
}

async function errorOf(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(Error);
  return e as Error;
}

// --- detection against real binaries --------------------------------------------------------

const hostX86 = await findOnPath("qemu-system-x86_64");
const realAarch64 = (await installedMatrix(process.env, ["aarch64"]))[0];

describe("target detection (query-target), real binaries", () => {
  test.skipIf(!hostX86)(
    `qemu-system-x86_64 on PATH emulates x86_64${hostX86 ? "" : " (skipped: no qemu-system-x86_64 on PATH: apt-get install qemu-system-x86)"}`,
    async () => {
      const path = hostX86 as string;
      expect(await queryTargetArch(path)).toBe("x86_64");
      expect((await resolveQemuBinary(path)).arch).toBe("x86_64");
      expect((await probeQemuBinary(path)).arch).toBe("x86_64");
    },
  );

  test.skipIf(!realAarch64)(
    `a matrix qemu-system-aarch64 emulates aarch64${realAarch64 ? ` (${realAarch64.path})` : " (skipped: no aarch64 matrix binary: run scripts/install-qemu-matrix)"}`,
    async () => {
      const path = realAarch64?.path as string;
      expect(await queryTargetArch(path)).toBe("aarch64");
      // By path: the target comes from the binary; the probe carries it.
      expect((await resolveQemuBinary(path)).arch).toBe("aarch64");
      const info = await probeQemuBinary(path);
      expect(info.arch).toBe("aarch64");
      expect(info.accels).toContain("tcg");
      // By matrix name and target.
      const byName = await probeQemuBinary(realAarch64?.name as string, "aarch64");
      expect(byName).toMatchObject({ path, arch: "aarch64", version: realAarch64?.version });
    },
  );

  test.skipIf(!hostX86)("the answer is cached per path", async () => {
    const path = hostX86 as string;
    expect(queryTargetArch(path)).toBe(queryTargetArch(path));
  });
});

describe("target detection, fakes", () => {
  test("a QEMU for a target the harness does not run is refused, naming the supported ones", async () => {
    const s = await scratchEnv();
    try {
      const fake = join(s.root, "bin", "qemu-system-ppc64");
      await writeFake(fake, "10.0.2", "ppc64");
      const e = await errorOf(resolveQemuBinary(fake, s.env));
      expect(e).toBeInstanceOf(QemuResolveError);
      expect(e.message).toBe(
        `QEMU binary "${fake}": ${fake} emulates ppc64; the harness supports x86_64 and aarch64 (qemu-system-x86_64, qemu-system-aarch64)`,
      );
      // Its name does not matter: a ppc64 QEMU named qemu-system-x86_64 is still ppc64.
      const disguised = join(s.root, "bin", "qemu-system-x86_64");
      await writeFake(disguised, "10.0.2", "ppc64");
      expect((await errorOf(resolveQemuBinary("qemu-system-x86_64", s.env))).message).toMatch(
        /emulates ppc64; the harness supports x86_64 and aarch64/,
      );
      // And the target comes from the binary, not the name: an aarch64 one named x86_64.
      const misnamed = join(s.root, "misnamed", "qemu-system-x86_64");
      await writeFake(misnamed, "10.0.2", "aarch64");
      expect((await resolveQemuBinary(misnamed, s.env)).arch).toBe("aarch64");
    } finally {
      await s.done();
    }
  });

  test("a binary that prints a version but answers no QMP says its target is unknown", async () => {
    const s = await scratchEnv();
    try {
      const fake = join(s.root, "bin", "qemu-system-x86_64");
      await writeFake(fake, "10.0.2", undefined);
      const e = await errorOf(resolveQemuBinary(fake, s.env));
      expect(e).toBeInstanceOf(QemuResolveError);
      expect(e.message).toMatch(
        /-machine none -display none -nodefaults -qmp stdio \(query-target\) did not tell its target \(exit code 1, output "fake: no QMP here"\)/,
      );
    } finally {
      await s.done();
    }
  });
});

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
