import { join } from "node:path";
import { describe, expect, test } from "vitest";
import {
  hostQemuArch,
  isQemuArch,
  QEMU_ARCHES,
  qemuSystemCommand,
  sortArches,
  supportedArchesText,
} from "./arch.ts";
import { probeQemuBinary } from "./binary.ts";
import { errorOf, scratchEnv, writeFakeQemu as writeFake } from "./fake-qemu.test-helpers.ts";
import {
  findOnPath,
  installedMatrix,
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
