// What a machine looks like on each target: the board, the CPU model, where RAM starts. The
// harness boots its own firmware-less guest, so these are the only per-target facts it needs.

import type { Accel } from "./accel.ts";
import type { QemuArch } from "./arch.ts";

export interface MachineArch {
  /** -machine when none is given: the binary's own newest board of that family. */
  defaultMachineType: string;
  /** Versioned boards, `<family>-X.Y`, pinned for cross-version pairs. */
  machineFamily: "pc-i440fx" | "virt";
  /**
   * -cpu, or undefined for QEMU's default. virt's default CPU is a 32-bit cortex-a15; `max`
   * under TCG, the host's own CPU under KVM.
   */
  cpu: (accel: Accel) => string | undefined;
  /** Guest-physical address of RAM's first byte: offset 0 of a memory-backend-file. */
  ramBase: number;
  /**
   * The board's own RAM block name. A memory backend given to one side must carry it as its id:
   * migration matches RAM blocks by name, and the other side may use the board's default.
   */
  ramBlockId: string;
}

export const MACHINE_ARCHES: Record<QemuArch, MachineArch> = {
  x86_64: {
    defaultMachineType: "pc",
    machineFamily: "pc-i440fx",
    cpu: () => undefined,
    ramBase: 0,
    ramBlockId: "pc.ram",
  },
  aarch64: {
    defaultMachineType: "virt",
    machineFamily: "virt",
    cpu: (accel) => (accel === "kvm" ? "host" : "max"),
    ramBase: 0x4000_0000,
    ramBlockId: "mach-virt.ram",
  },
};

export function machineArch(arch: QemuArch): MachineArch {
  return MACHINE_ARCHES[arch];
}
