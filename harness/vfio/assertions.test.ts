// The suite's VFIO checks on recorded data. captured-*.json came from the real binaries on this
// machine; constructed-*.json are built from QEMU's source (see each file's `provenance`): this
// machine has no VFIO, so no VFIO migration could be captured.

import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import type { MigrationInfo } from "../qmp/qapi.ts";
import {
  blockerRefusal,
  checkDeviceAfterMigration,
  checkHmpVfio,
  checkPostcopyRefused,
  checkRemainingCountsDevices,
  checkVfioTransferred,
  explainBlocker,
  parseInfoPci,
  refusesVfioPostcopy,
} from "./assertions.ts";

const fixture = <T>(name: string): T =>
  JSON.parse(readFileSync(new URL(`../fixtures/vfio/${name}`, import.meta.url), "utf8"));

interface Series {
  qemu: string;
  expectPrecopyData: boolean;
  source: { qmp: MigrationInfo; hmp: string }[];
}
const SERIES = ["7.2.22", "10.0.2", "11.1.3"].map((v) =>
  fixture<Series>(`constructed-${v}-precopy.json`),
);

describe.each(SERIES)("precopy with a device, QEMU $qemu (constructed)", (s) => {
  const qmp = s.source.map((x) => x.qmp);
  test("vfio.transferred is present, never goes down and ends above zero", () => {
    expect(checkVfioTransferred(qmp, { expectPrecopyData: s.expectPrecopyData })).toEqual([]);
  });
  test("info migrate shows the VFIO figure where this QEMU prints it, matching QMP", () => {
    for (const x of s.source) expect(checkHmpVfio(x.hmp, x.qmp)).toEqual([]);
  });
  test("the HMP VFIO line missing is caught", () => {
    const x = s.source.at(-1);
    if (!x) throw new Error("empty series");
    const stripped = x.hmp
      .replace(/vfio device transferred: \d+ kbytes\r?\n/, "")
      .replace(/, vfio=[^\r\n]+/, "");
    expect(checkHmpVfio(stripped, x.qmp)).toEqual([
      expect.stringMatching(/query-migrate has vfio.transferred=\d+ but info migrate has no/),
    ]);
  });
  test("a vfio.transferred that went down is caught", () => {
    const [a, b] = qmp;
    if (!a || !b) throw new Error("short series");
    const broken = [{ ...a, status: "active", vfio: { transferred: 10_000_000_000 } }, b];
    expect(checkVfioTransferred(broken, { expectPrecopyData: false })).toEqual([
      expect.stringMatching(
        /^source vfio.transferred went down from 10000000000 to \d+ at snapshot 1$/,
      ),
    ]);
  });
});

describe("checkVfioTransferred", () => {
  test("7.2 sends device data in stop-copy only: asking for pre-copy data fails there", () => {
    const s72 = SERIES[0];
    if (!s72) throw new Error("no 7.2 series");
    expect(
      checkVfioTransferred(
        s72.source.map((x) => x.qmp),
        { expectPrecopyData: true },
      ),
    ).toEqual([
      "no active source snapshot shows vfio.transferred > 0: the device sent no pre-copy data while the guest ran",
    ]);
  });
  test("a real capture without a device (no vfio member) is reported per snapshot", () => {
    const real = fixture<Series>("constructed-10.0.2-precopy.json").source.map((x) => {
      const { vfio: _drop, ...rest } = x.qmp;
      return rest as MigrationInfo;
    });
    const problems = checkVfioTransferred(real, { expectPrecopyData: false });
    expect(problems[0]).toBe(
      "source snapshot 0 (status active) has no vfio member: QEMU does not count the device as migrating",
    );
    expect(problems.at(-1)).toMatch(/vfio.transferred is absent after completion/);
  });
});

describe("checkRemainingCountsDevices", () => {
  const s111 = SERIES[2]?.source.map((x) => x.qmp) ?? [];
  test("11.1: remaining (2.06 GiB) >= ram.remaining (43.2 MiB) while active", () => {
    expect(checkRemainingCountsDevices(s111, true)).toEqual([]);
  });
  test("a remaining below ram.remaining is caught", () => {
    const [active] = s111;
    if (!active?.ram) throw new Error("no active snapshot");
    const bad = { ...active, remaining: active.ram.remaining - 4096 };
    expect(checkRemainingCountsDevices([bad], true)).toEqual([
      `source snapshot 0: remaining ${active.ram.remaining - 4096} < ram.remaining ${active.ram.remaining}: the system-wide figure leaves out device state`,
    ]);
  });
  test("schema has remaining but no snapshot carries it: caught; older QEMU: nothing to check", () => {
    const old = SERIES[1]?.source.map((x) => x.qmp) ?? [];
    expect(checkRemainingCountsDevices(old, true)).toHaveLength(1);
    expect(checkRemainingCountsDevices(old, false)).toEqual([]);
  });
});

describe("blockers and refusals (constructed)", () => {
  const b = fixture<{
    blocked: { qemu: string; qmp: MigrationInfo; hmp: string }[];
    postcopyRefusal: { desc: string };
  }>("constructed-blockers.json");
  test("a blocker becomes a refusal message with advice", () => {
    const [old, kernel, dirty] = b.blocked;
    expect(blockerRefusal("source", old?.qmp ?? {})).toBe(
      `the source cannot migrate: query-migrate blocked-reasons: "VFIO device doesn't support migration (the host driver has no migration support: bind the vendor's vfio-pci variant driver (or use an mtty mdev on Linux >= 6.7))"`,
    );
    expect(blockerRefusal("source", kernel?.qmp ?? {})).toMatch(
      /not supported in kernel \(the host driver/,
    );
    expect(blockerRefusal("source", dirty?.qmp ?? {})).toMatch(
      /QEMU_MIGTEST_VFIO_ENABLE_MIGRATION=on/,
    );
    expect(blockerRefusal("source", {})).toBeUndefined();
    expect(explainBlocker("some other blocker")).toBe("some other blocker");
  });
  test("info migrate prints the same blockers (parser agrees with QMP)", () => {
    for (const x of b.blocked) expect(checkHmpVfio(x.hmp, x.qmp)).toEqual([]);
  });
  test("postcopy: QEMU's refusal passes; acceptance or another refusal fails", () => {
    expect(checkPostcopyRefused({ kind: "refused", message: b.postcopyRefusal.desc })).toEqual([]);
    expect(checkPostcopyRefused({ kind: "completed" })).toHaveLength(1);
    expect(checkPostcopyRefused({ kind: "failed", message: "x" })[0]).toMatch(
      /accepted and then failed/,
    );
    expect(
      checkPostcopyRefused({ kind: "refused", message: "Postcopy is not supported" })[0],
    ).toMatch(/not for VFIO/);
  });
  test("which versions refuse postcopy with VFIO (8.2+)", () => {
    expect(refusesVfioPostcopy({ major: 8, minor: 1 })).toBe(false);
    expect(refusesVfioPostcopy({ major: 8, minor: 2 })).toBe(true);
    expect(refusesVfioPostcopy({ major: 10, minor: 0 })).toBe(true);
  });
});

describe("info pci", () => {
  test.each(["7.2.22", "10.0.2", "11.1.3"])("parses the real %s output", (v) => {
    const { infoPci } = fixture<{ infoPci: string }>(`captured-${v}.json`);
    const devs = parseInfoPci(infoPci);
    expect(devs.map((d) => d.id)).toEqual(["", "", "", "", "vfio0", "ser0"]);
    expect(devs.find((d) => d.id === "vfio0")).toMatchObject({
      bus: 0,
      slot: 2,
      function: 0,
      className: "Ethernet controller",
      vendorDevice: "8086:100e",
      subsystem: "1af4:1100",
    });
    expect(devs.find((d) => d.id === "vfio0")?.bars).toHaveLength(3);
  });
  test("the mtty device is on the destination after migration, or its absence is caught", () => {
    const f = fixture<{ source: string; destination: string; destinationMissing: string }>(
      "constructed-info-pci-mtty.json",
    );
    expect(checkDeviceAfterMigration(f.source, f.destination, "vfio0")).toEqual([]);
    expect(checkDeviceAfterMigration(f.source, f.destinationMissing, "vfio0")).toEqual([
      'destination info pci has no device with id "vfio0" after migration',
    ]);
    const other = f.destination.replace("PCI device 4348:3253", "PCI device 4348:3254");
    expect(checkDeviceAfterMigration(f.source, other, "vfio0")).toEqual([
      'device "vfio0" vendorDevice: source "4348:3253", destination "4348:3254"',
    ]);
  });
});
