import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { AccelError, chooseAccel, detectKvm } from "./accel.ts";

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

describe("detectKvm", () => {
  test("no /dev/kvm: not usable, says to load the module", () => {
    const s = detectKvm(fakeRoot({}));
    expect(s).toMatchObject({ usable: false, hardware: false });
    expect(s.reason).toMatch(/dev\/kvm does not exist: load the KVM module .*modprobe kvm_intel/);
  });

  test("kvm_intel: hardware", () => {
    expect(detectKvm(fakeRoot({ kvm: true, modules: ["kvm", "kvm_intel"] }))).toMatchObject({
      usable: true,
      hardware: true,
      backend: "kvm_intel",
    });
  });

  test("kvm_amd: hardware", () => {
    expect(detectKvm(fakeRoot({ kvm: true, modules: ["kvm", "kvm_amd"] })).backend).toBe("kvm_amd");
  });

  test("kvm_pvm: usable but software, and says why", () => {
    const s = detectKvm(fakeRoot({ kvm: true, modules: ["kvm", "kvm_pvm"] }));
    expect(s).toMatchObject({ usable: true, hardware: false, backend: "kvm_pvm" });
    expect(s.reason).toMatch(/kvm_pvm, a software hypervisor/);
  });

  test("kvm_pvm wins over a vendor module loaded beside it", () => {
    expect(
      detectKvm(fakeRoot({ kvm: true, modules: ["kvm", "kvm_intel", "kvm_pvm"] })).backend,
    ).toBe("kvm_pvm");
  });

  test("built-in KVM: the CPU flags tell the vendor", () => {
    expect(
      detectKvm(fakeRoot({ kvm: true, modules: ["kvm"], cpuFlags: "fpu vmx sse" })).backend,
    ).toBe("kvm_intel");
  });

  test("unknown backend is not taken for hardware", () => {
    expect(detectKvm(fakeRoot({ kvm: true }))).toMatchObject({
      usable: true,
      hardware: false,
      backend: "unknown",
    });
  });

  test.skipIf(process.getuid?.() === 0)(
    "no permission on /dev/kvm: says to join the group (skipped as root: root can open any file)",
    () => {
      const s = detectKvm(fakeRoot({ kvm: true, modules: ["kvm_intel"], mode: 0o000 }));
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
    expect(chooseAccel("auto", hw, ["tcg", "kvm"]).accel).toBe("kvm");
  });
  test("auto picks tcg on a software KVM and says why", () => {
    const c = chooseAccel("auto", pvm, ["tcg", "kvm"]);
    expect(c).toMatchObject({ accel: "tcg", reason: "auto chose tcg: pvm is software" });
  });
  test("auto picks tcg when the binary has no kvm", () => {
    expect(chooseAccel("auto", hw, ["tcg"]).reason).toMatch(/built without KVM/);
  });
  test("forced kvm runs on a software KVM, with a note", () => {
    const c = chooseAccel("kvm", pvm, ["tcg", "kvm"]);
    expect(c.accel).toBe("kvm");
    expect(c.reason).toMatch(/note: pvm is software/);
  });
  test("forced kvm without KVM is an error that says how to fix it", () => {
    expect(() => chooseAccel("kvm", none, ["tcg", "kvm"])).toThrow(AccelError);
    expect(() => chooseAccel("kvm", none, ["tcg", "kvm"])).toThrow(
      /KVM is not usable: \/dev\/kvm does not exist; or use accel tcg/,
    );
  });
  test("forced kvm on a binary without kvm", () => {
    expect(() => chooseAccel("kvm", hw, ["tcg"])).toThrow(/built without KVM/);
  });
  test("forced tcg on a binary without tcg", () => {
    expect(() => chooseAccel("tcg", hw, ["kvm"])).toThrow(/built without TCG/);
  });
});
