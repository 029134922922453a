// Whether this host lets QEMU's postcopy use userfaultfd, asked the way QEMU's own probe goes:
// the userfaultfd(2) syscall (root always; others only with vm.unprivileged_userfaultfd = 1),
// then /dev/userfaultfd (Linux 5.11+, access by file permission). A postcopy test skips with the
// reason when neither works, and QEMU_MIGTEST_REQUIRE_POSTCOPY=1 turns that skip into a failure:
// QEMU's own suite once let every postcopy test skip silently for a year.

import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export interface UserfaultfdProbe {
  usable: boolean;
  /** How QEMU will get a userfaultfd, or why it cannot. */
  reason: string;
}

export function probeUserfaultfd(
  root = "/",
  uid: number = process.getuid?.() ?? -1,
): UserfaultfdProbe {
  const sysctl = join(root, "proc/sys/vm/unprivileged_userfaultfd");
  const device = join(root, "dev/userfaultfd");
  const unprivileged = existsSync(sysctl) ? readFileSync(sysctl, "utf8").trim() : undefined;
  if (uid === 0) {
    return { usable: true, reason: "running as root: the userfaultfd syscall is allowed" };
  }
  if (unprivileged === "1") {
    return { usable: true, reason: "vm.unprivileged_userfaultfd = 1: the syscall is allowed" };
  }
  if (existsSync(device)) {
    try {
      accessSync(device, constants.R_OK | constants.W_OK);
      return { usable: true, reason: `${device} is readable and writable by this user` };
    } catch {
      return {
        usable: false,
        reason: `not root, vm.unprivileged_userfaultfd is ${unprivileged ?? "absent"}, and ${device} is not read-writable by this user: run as root, or give this user access to ${device} (e.g. a group with rw), or sysctl vm.unprivileged_userfaultfd=1`,
      };
    }
  }
  return {
    usable: false,
    reason: `not root, vm.unprivileged_userfaultfd is ${unprivileged ?? "absent"}, and there is no ${device}: run as root or sysctl vm.unprivileged_userfaultfd=1`,
  };
}

/** A postcopy test's verdict on a host without userfaultfd: skip, or fail when postcopy is required. */
export function postcopySkip(
  probe: UserfaultfdProbe,
  env: NodeJS.ProcessEnv = process.env,
): { skip?: string; fail?: string } {
  if (probe.usable) return {};
  const why = `postcopy needs userfaultfd: ${probe.reason}`;
  return env.QEMU_MIGTEST_REQUIRE_POSTCOPY === "1"
    ? { fail: `${why} (QEMU_MIGTEST_REQUIRE_POSTCOPY=1: this runner must run postcopy)` }
    : { skip: why };
}
