// Which accelerator a machine runs on, and why.
// `auto` must not pick a KVM that is really a software hypervisor (kvm_pvm emulates guest kernel
// mode about 300x slower: SeaBIOS takes seconds and Linux does not boot), so the KVM backend is
// identified from the modules loaded, not just from /dev/kvm being openable.

import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export type AccelRequest = "auto" | "kvm" | "tcg";
export type Accel = "kvm" | "tcg";

export type KvmBackend = "kvm_intel" | "kvm_amd" | "kvm_pvm" | "unknown";

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

/** Probe KVM. `root` lets tests point at a fake tree holding dev/kvm and sys/module/*. */
export function detectKvm(root = "/"): KvmStatus {
  const dev = join(root, "dev/kvm");
  if (!existsSync(dev)) {
    return {
      usable: false,
      hardware: false,
      reason: `${dev} does not exist: load the KVM module for this CPU (modprobe kvm_intel or modprobe kvm_amd) and check that virtualisation is enabled in the firmware`,
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

/**
 * Decide the accelerator. `binaryAccels` is what the QEMU binary lists in `-accel help`.
 * Forced `kvm` runs on any usable KVM, software ones included: the user asked for it.
 */
export function chooseAccel(
  requested: AccelRequest,
  kvm: KvmStatus,
  binaryAccels: readonly string[],
): AccelChoice {
  const binaryHasKvm = binaryAccels.includes("kvm");
  switch (requested) {
    case "tcg":
      if (!binaryAccels.includes("tcg")) {
        throw new AccelError(
          `accelerator tcg was requested but this QEMU was built without TCG (it lists: ${binaryAccels.join(", ")}); use accel kvm or a QEMU built with --enable-tcg`,
        );
      }
      return { accel: "tcg", requested, reason: "tcg requested" };
    case "kvm":
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
