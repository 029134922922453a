import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { postcopySkip, probeUserfaultfd } from "./userfaultfd.ts";

const roots = mkdtempSync(join(tmpdir(), "uffd-"));
afterAll(() => rmSync(roots, { recursive: true, force: true }));

/** A fake root with the sysctl set as given and, optionally, a /dev/userfaultfd. */
function fakeRoot(name: string, unprivileged: string | undefined, device?: number): string {
  const root = join(roots, name);
  mkdirSync(join(root, "proc/sys/vm"), { recursive: true });
  mkdirSync(join(root, "dev"), { recursive: true });
  if (unprivileged !== undefined) {
    writeFileSync(join(root, "proc/sys/vm/unprivileged_userfaultfd"), `${unprivileged}\n`);
  }
  if (device !== undefined) {
    writeFileSync(join(root, "dev/userfaultfd"), "");
    chmodSync(join(root, "dev/userfaultfd"), device);
  }
  return root;
}

describe("userfaultfd probe", () => {
  test("root may use the syscall whatever the sysctl says", () => {
    expect(probeUserfaultfd(fakeRoot("root", "0"), 0)).toMatchObject({ usable: true });
  });

  test("a user with vm.unprivileged_userfaultfd = 1 may", () => {
    expect(probeUserfaultfd(fakeRoot("sysctl", "1"), 1000)).toMatchObject({ usable: true });
  });

  test("a user without either, and without /dev/userfaultfd, may not: the reason says what to do", () => {
    const p = probeUserfaultfd(fakeRoot("none", "0"), 1000);
    expect(p.usable).toBe(false);
    expect(p.reason).toMatch(
      /vm\.unprivileged_userfaultfd is 0, and there is no .*dev\/userfaultfd: run as root/,
    );
  });

  test("a skip on such a host, unless postcopy is required: then a failure", () => {
    const p = probeUserfaultfd(fakeRoot("none2", "0"), 1000);
    expect(postcopySkip(p, {}).skip).toMatch(/^postcopy needs userfaultfd: /);
    expect(postcopySkip(p, {}).fail).toBeUndefined();
    const forced = postcopySkip(p, { QEMU_MIGTEST_REQUIRE_POSTCOPY: "1" });
    expect(forced.skip).toBeUndefined();
    expect(forced.fail).toMatch(/QEMU_MIGTEST_REQUIRE_POSTCOPY=1: this runner must run postcopy/);
    expect(
      postcopySkip({ usable: true, reason: "root" }, { QEMU_MIGTEST_REQUIRE_POSTCOPY: "1" }),
    ).toEqual({});
  });
});
