// The QEMU targets the harness runs, in QEMU's own names (query-target's `arch`), and what is
// true of a target as a whole. A binary's target is asked of the binary (matrix.ts), never taken
// from its file name.

/** Every target the harness supports, in the order runs list them. */
export const QEMU_ARCHES = ["x86_64", "aarch64"] as const;
export type QemuArch = (typeof QEMU_ARCHES)[number];

export function isQemuArch(value: string): value is QemuArch {
  return (QEMU_ARCHES as readonly string[]).includes(value);
}

/** The system emulator's command name: `qemu-system-x86_64`, `qemu-system-aarch64`. */
export function qemuSystemCommand<A extends QemuArch>(arch: A): `qemu-system-${A}` {
  return `qemu-system-${arch}`;
}

/** Node's process.arch in QEMU's names (only the targets that have one). */
const NODE_TO_QEMU: Readonly<Record<string, QemuArch>> = { x64: "x86_64", arm64: "aarch64" };

/**
 * The host's architecture as a QEMU target (KVM runs guests of this target only), or undefined
 * on a host that is none of QEMU_ARCHES. `nodeArch` lets tests stand in for another host.
 */
export function hostQemuArch(nodeArch: string = process.arch): QemuArch | undefined {
  return NODE_TO_QEMU[nodeArch];
}

/** "x86_64 and aarch64": the supported targets, for messages. */
export function supportedArchesText(): string {
  const all = [...QEMU_ARCHES];
  return all.length > 1 ? `${all.slice(0, -1).join(", ")} and ${all.at(-1)}` : (all[0] ?? "");
}

/** Sorts targets into QEMU_ARCHES order (x86_64 first), dropping duplicates. */
export function sortArches(arches: Iterable<QemuArch>): QemuArch[] {
  const set = new Set(arches);
  return QEMU_ARCHES.filter((a) => set.has(a));
}
