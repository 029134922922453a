// Which accelerator a machine runs on, and why.
// `auto` must not pick a KVM that is really a software hypervisor (kvm_pvm emulates guest kernel
// mode about 300x slower: SeaBIOS takes seconds and Linux does not boot), so the KVM backend is
// identified from the modules loaded, not just from /dev/kvm being openable.
// KVM runs guests of the host's own architecture only: an aarch64 QEMU on an x86_64 host is TCG.

import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { hostQemuArch, type QemuArch } from "./arch.ts";

export type AccelRequest = "auto" | "kvm" | "tcg";
export type Accel = "kvm" | "tcg";

/** "arm64": the arm64 kernel's KVM (built in, no vendor module; hardware on any arm64 host). */
export type KvmBackend = "kvm_intel" | "kvm_amd" | "kvm_pvm" | "arm64" | "unknown";

export interface KvmStatus {
  /** /dev/kvm exists and this process may open it read-write. */
  usable: boolean;
  /** Usable and backed by hardware virtualisation (VT-x / AMD-V). */
  hardware: boolean;
  backend?: KvmBackend;
  /** One sentence a QEMU developer can act on. */
  reason: string;
}

export interface AccelChoice {
  accel: Accel;
  requested: AccelRequest;
  reason: string;
}

export class AccelError extends Error {
  override name = "AccelError";
}

/**
 * Probe KVM. `root` lets tests point at a fake tree holding dev/kvm and sys/module/*, `hostArch`
 * stand in for another host (default: this one's, from process.arch).
 */
export function detectKvm(root = "/", hostArch: QemuArch | undefined = hostQemuArch()): KvmStatus {
  const dev = join(root, "dev/kvm");
  if (!existsSync(dev)) {
    return {
      usable: false,
      hardware: false,
      reason:
        hostArch === "aarch64"
          ? `${dev} does not exist: this arm64 kernel has no KVM (it needs CONFIG_KVM and to be booted at EL2; in a VM, nested virtualisation)`
          : `${dev} does not exist: load the KVM module for this CPU (modprobe kvm_intel or modprobe kvm_amd) and check that virtualisation is enabled in the firmware`,
    };
  }
  try {
    accessSync(dev, constants.R_OK | constants.W_OK);
  } catch {
    return {
      usable: false,
      hardware: false,
      reason: `${dev} exists but this user cannot open it read-write: add the user to the group owning it (usermod -aG kvm $USER, then log in again) or run as root`,
    };
  }
  // arm64 has no software KVM like kvm_pvm and no vendor modules: a usable /dev/kvm is hardware.
  if (hostArch === "aarch64") {
    return { usable: true, hardware: true, backend: "arm64", reason: `${dev} is usable (arm64)` };
  }
  const backend = kvmBackend(root);
  if (backend === "kvm_pvm") {
    return {
      usable: true,
      hardware: false,
      backend,
      reason: `${dev} is served by kvm_pvm, a software hypervisor: guest user mode runs natively but guest kernel mode is emulated (about 300x slower), so SeaBIOS takes seconds and a Linux kernel does not boot`,
    };
  }
  if (backend === "unknown") {
    return {
      usable: true,
      hardware: false,
      backend,
      reason: `${dev} is usable but none of kvm_intel, kvm_amd or kvm_pvm is loaded, so the backend is unknown; not treated as hardware KVM`,
    };
  }
  return { usable: true, hardware: true, backend, reason: `${dev} is usable (${backend})` };
}

function kvmBackend(root: string): KvmBackend {
  // kvm_pvm first: it can be loaded beside a vendor module and is then what serves /dev/kvm.
  for (const m of ["kvm_pvm", "kvm_intel", "kvm_amd"] as const) {
    if (existsSync(join(root, "sys/module", m))) return m;
  }
  // Built-in (not modular) KVM shows no module directory; the CPU flags still tell the vendor.
  try {
    const flags = readFileSync(join(root, "proc/cpuinfo"), "utf8");
    if (/^flags\s*:.*\bvmx\b/m.test(flags) && existsSync(join(root, "sys/module/kvm"))) {
      return "kvm_intel";
    }
    if (/^flags\s*:.*\bsvm\b/m.test(flags) && existsSync(join(root, "sys/module/kvm"))) {
      return "kvm_amd";
    }
  } catch {
    // no cpuinfo in a fake tree
  }
  return "unknown";
}

/** Why KVM cannot run `arch` guests on this host, or undefined when it can (same architecture). */
export function kvmArchMismatch(
  arch: QemuArch,
  hostArch: QemuArch | undefined,
): string | undefined {
  if (arch === hostArch) return undefined;
  return hostArch
    ? `KVM runs only ${hostArch} guests on this ${hostArch} host`
    : `KVM runs only guests of the host's own architecture (${process.arch}), not ${arch}`;
}

/**
 * Decide the accelerator. `binaryAccels` is what the QEMU binary lists in `-accel help`, `arch`
 * the target it emulates (default x86_64), `hostArch` the host's (default: this one's; tests
 * inject another). Forced `kvm` runs on any usable KVM, software ones included: the user asked
 * for it; but never for a target other than the host's.
 */
export function chooseAccel(
  requested: AccelRequest,
  kvm: KvmStatus,
  binaryAccels: readonly string[],
  arch: QemuArch = "x86_64",
  hostArch: QemuArch | undefined = hostQemuArch(),
): AccelChoice {
  const binaryHasKvm = binaryAccels.includes("kvm");
  const mismatch = kvmArchMismatch(arch, hostArch);
  switch (requested) {
    case "tcg":
      if (!binaryAccels.includes("tcg")) {
        throw new AccelError(
          `accelerator tcg was requested but this QEMU was built without TCG (it lists: ${binaryAccels.join(", ")}); use accel kvm or a QEMU built with --enable-tcg`,
        );
      }
      return { accel: "tcg", requested, reason: "tcg requested" };
    case "kvm":
      if (mismatch) {
        throw new AccelError(
          `accelerator kvm was requested for a qemu-system-${arch}, but ${mismatch}; set QEMU_MIGTEST_ACCEL=tcg (accel tcg), or QEMU_MIGTEST_ARCHES=${hostArch ?? "x86_64"} to test only ${hostArch ?? "x86_64"} binaries`,
        );
      }
      if (!kvm.usable) {
        throw new AccelError(
          `accelerator kvm was requested but KVM is not usable: ${kvm.reason}; or use accel tcg`,
        );
      }
      if (!binaryHasKvm) {
        throw new AccelError(
          `accelerator kvm was requested but this QEMU was built without KVM (it lists: ${binaryAccels.join(", ")}); use accel tcg or a QEMU built with --enable-kvm`,
        );
      }
      return {
        accel: "kvm",
        requested,
        reason: kvm.hardware ? "kvm requested" : `kvm requested (note: ${kvm.reason})`,
      };
    case "auto":
      if (mismatch) {
        return { accel: "tcg", requested, reason: `auto chose tcg: ${mismatch}` };
      }
      if (kvm.hardware && binaryHasKvm) {
        return { accel: "kvm", requested, reason: `auto: ${kvm.reason}` };
      }
      return {
        accel: "tcg",
        requested,
        reason: `auto chose tcg: ${binaryHasKvm ? kvm.reason : "this QEMU was built without KVM"}`,
      };
  }
}
