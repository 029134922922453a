import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { AccelError, chooseAccel, detectKvm, kvmArchMismatch } from "./accel.ts";
import { hostQemuArch } from "./arch.ts";

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

/** A fake root with dev/kvm and the named sys/module entries. */
function fakeRoot(opts: {
  kvm?: boolean;
  modules?: string[];
  cpuFlags?: string;
  mode?: number;
}): string {
  const root = mkdtempSync(join(tmpdir(), "accel-"));
  roots.push(root);
  mkdirSync(join(root, "dev"));
  mkdirSync(join(root, "sys/module"), { recursive: true });
  mkdirSync(join(root, "proc"));
  if (opts.kvm) {
    writeFileSync(join(root, "dev/kvm"), "");
    chmodSync(join(root, "dev/kvm"), opts.mode ?? 0o600);
  }
  for (const m of opts.modules ?? []) mkdirSync(join(root, "sys/module", m));
  if (opts.cpuFlags)
    writeFileSync(join(root, "proc/cpuinfo"), `processor\t: 0\nflags\t\t: ${opts.cpuFlags}\n`);
  return root;
}

// The x86_64 cases pass the host arch explicitly, so they hold on any host.
describe("detectKvm", () => {
  test("no /dev/kvm: not usable, says to load the module", () => {
    const s = detectKvm(fakeRoot({}), "x86_64");
    expect(s).toMatchObject({ usable: false, hardware: false });
    expect(s.reason).toMatch(/dev\/kvm does not exist: load the KVM module .*modprobe kvm_intel/);
  });

  test("kvm_intel: hardware", () => {
    expect(
      detectKvm(fakeRoot({ kvm: true, modules: ["kvm", "kvm_intel"] }), "x86_64"),
    ).toMatchObject({
      usable: true,
      hardware: true,
      backend: "kvm_intel",
    });
  });

  test("kvm_amd: hardware", () => {
    expect(detectKvm(fakeRoot({ kvm: true, modules: ["kvm", "kvm_amd"] }), "x86_64").backend).toBe(
      "kvm_amd",
    );
  });

  test("kvm_pvm: usable but software, and says why", () => {
    const s = detectKvm(fakeRoot({ kvm: true, modules: ["kvm", "kvm_pvm"] }), "x86_64");
    expect(s).toMatchObject({ usable: true, hardware: false, backend: "kvm_pvm" });
    expect(s.reason).toMatch(/kvm_pvm, a software hypervisor/);
  });

  test("kvm_pvm wins over a vendor module loaded beside it", () => {
    expect(
      detectKvm(fakeRoot({ kvm: true, modules: ["kvm", "kvm_intel", "kvm_pvm"] }), "x86_64")
        .backend,
    ).toBe("kvm_pvm");
  });

  test("built-in KVM: the CPU flags tell the vendor", () => {
    expect(
      detectKvm(fakeRoot({ kvm: true, modules: ["kvm"], cpuFlags: "fpu vmx sse" }), "x86_64")
        .backend,
    ).toBe("kvm_intel");
  });

  test("unknown backend is not taken for hardware", () => {
    expect(detectKvm(fakeRoot({ kvm: true }), "x86_64")).toMatchObject({
      usable: true,
      hardware: false,
      backend: "unknown",
    });
  });

  test.skipIf(process.getuid?.() === 0)(
    "no permission on /dev/kvm: says to join the group (skipped as root: root can open any file)",
    () => {
      const s = detectKvm(fakeRoot({ kvm: true, modules: ["kvm_intel"], mode: 0o000 }), "x86_64");
      expect(s.usable).toBe(false);
      expect(s.reason).toMatch(/usermod -aG kvm/);
    },
  );
});

describe("chooseAccel", () => {
  const hw = {
    usable: true,
    hardware: true,
    backend: "kvm_intel" as const,
    reason: "/dev/kvm is usable (kvm_intel)",
  };
  const pvm = {
    usable: true,
    hardware: false,
    backend: "kvm_pvm" as const,
    reason: "pvm is software",
  };
  const none = { usable: false, hardware: false, reason: "/dev/kvm does not exist" };

  test("auto picks kvm on hardware KVM", () => {
    expect(chooseAccel("auto", hw, ["tcg", "kvm"], "x86_64", "x86_64").accel).toBe("kvm");
  });
  test("auto picks tcg on a software KVM and says why", () => {
    const c = chooseAccel("auto", pvm, ["tcg", "kvm"], "x86_64", "x86_64");
    expect(c).toMatchObject({ accel: "tcg", reason: "auto chose tcg: pvm is software" });
  });
  test("auto picks tcg when the binary has no kvm", () => {
    expect(chooseAccel("auto", hw, ["tcg"], "x86_64", "x86_64").reason).toMatch(
      /built without KVM/,
    );
  });
  test("forced kvm runs on a software KVM, with a note", () => {
    const c = chooseAccel("kvm", pvm, ["tcg", "kvm"], "x86_64", "x86_64");
    expect(c.accel).toBe("kvm");
    expect(c.reason).toMatch(/note: pvm is software/);
  });
  test("forced kvm without KVM is an error that says how to fix it", () => {
    expect(() => chooseAccel("kvm", none, ["tcg", "kvm"], "x86_64", "x86_64")).toThrow(AccelError);
    expect(() => chooseAccel("kvm", none, ["tcg", "kvm"], "x86_64", "x86_64")).toThrow(
      /KVM is not usable: \/dev\/kvm does not exist; or use accel tcg/,
    );
  });
  test("forced kvm on a binary without kvm", () => {
    expect(() => chooseAccel("kvm", hw, ["tcg"], "x86_64", "x86_64")).toThrow(/built without KVM/);
  });
  test("forced tcg on a binary without tcg", () => {
    expect(() => chooseAccel("tcg", hw, ["kvm"], "x86_64", "x86_64")).toThrow(/built without TCG/);
  });
});

describe("chooseAccel per host and target architecture", () => {
  const hw = {
    usable: true,
    hardware: true,
    backend: "kvm_intel" as const,
    reason: "/dev/kvm is usable (kvm_intel)",
  };

  test("KVM runs only the host's own target", () => {
    expect(kvmArchMismatch("x86_64", "x86_64")).toBeUndefined();
    expect(kvmArchMismatch("aarch64", "aarch64")).toBeUndefined();
    expect(kvmArchMismatch("aarch64", "x86_64")).toBe(
      "KVM runs only x86_64 guests on this x86_64 host",
    );
    expect(kvmArchMismatch("x86_64", "aarch64")).toBe(
      "KVM runs only aarch64 guests on this aarch64 host",
    );
    expect(kvmArchMismatch("x86_64", undefined)).toMatch(
      /^KVM runs only guests of the host's own architecture \(.*\), not x86_64$/,
    );
  });

  test("x86_64 host, aarch64 binary: auto picks tcg even on hardware KVM, saying why", () => {
    expect(chooseAccel("auto", hw, ["tcg", "kvm"], "aarch64", "x86_64")).toEqual({
      accel: "tcg",
      requested: "auto",
      reason: "auto chose tcg: KVM runs only x86_64 guests on this x86_64 host",
    });
  });

  test("x86_64 host, aarch64 binary: forced kvm is an error saying how to fix it", () => {
    const run = () => chooseAccel("kvm", hw, ["tcg", "kvm"], "aarch64", "x86_64");
    expect(run).toThrow(AccelError);
    expect(run).toThrow(
      "accelerator kvm was requested for a qemu-system-aarch64, but KVM runs only x86_64 guests on this x86_64 host; set QEMU_MIGTEST_ACCEL=tcg (accel tcg), or QEMU_MIGTEST_ARCHES=x86_64 to test only x86_64 binaries",
    );
    // tcg is fine.
    expect(chooseAccel("tcg", hw, ["tcg", "kvm"], "aarch64", "x86_64").accel).toBe("tcg");
  });

  test("arm64 host with a usable /dev/kvm: hardware KVM, auto picks kvm for aarch64", () => {
    const kvm = detectKvm(fakeRoot({ kvm: true, modules: ["kvm"] }), "aarch64");
    expect(kvm).toEqual({
      usable: true,
      hardware: true,
      backend: "arm64",
      reason: expect.stringMatching(/dev\/kvm is usable \(arm64\)$/),
    });
    expect(chooseAccel("auto", kvm, ["tcg", "kvm"], "aarch64", "aarch64")).toMatchObject({
      accel: "kvm",
      reason: expect.stringMatching(/^auto: .*usable \(arm64\)$/),
    });
    expect(chooseAccel("kvm", kvm, ["tcg", "kvm"], "aarch64", "aarch64")).toMatchObject({
      accel: "kvm",
      reason: "kvm requested",
    });
    // The x86_64 binary on that host: TCG, and forced KVM refused.
    expect(chooseAccel("auto", kvm, ["tcg", "kvm"], "x86_64", "aarch64").reason).toBe(
      "auto chose tcg: KVM runs only aarch64 guests on this aarch64 host",
    );
    expect(() => chooseAccel("kvm", kvm, ["tcg", "kvm"], "x86_64", "aarch64")).toThrow(
      /QEMU_MIGTEST_ARCHES=aarch64 to test only aarch64 binaries/,
    );
  });

  test("arm64 host without /dev/kvm: not usable, and the reason is about arm64", () => {
    const kvm = detectKvm(fakeRoot({}), "aarch64");
    expect(kvm).toMatchObject({ usable: false, hardware: false });
    expect(kvm.reason).toMatch(/this arm64 kernel has no KVM/);
    expect(chooseAccel("auto", kvm, ["tcg", "kvm"], "aarch64", "aarch64")).toMatchObject({
      accel: "tcg",
      reason: `auto chose tcg: ${kvm.reason}`,
    });
  });

  test("defaults: an x86_64 binary on this host (as before the arch argument)", () => {
    expect(chooseAccel("auto", hw, ["tcg", "kvm"]).accel).toBe(
      hostQemuArch() === "x86_64" ? "kvm" : "tcg",
    );
  });
});
