import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { accessSync, constants, existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { readGuestRamFile } from "../qemu/guest-ram-file.ts";
import {
  BOOTBLOCK_ERRORS,
  BOOTBLOCK_IMAGE_PATH,
  BOOTBLOCK_LAYOUT,
  type BootblockBoot,
  bootblockArch,
  bootblockQemuArgs,
  parseBootblockSerial,
  patchBootblockImage,
  validateBootblockParams,
  writeBootblockImage,
} from "./bootblock.ts";
import { checkBootblockRam, readBootblockStatus } from "./ram-check.ts";

const MiB = 1024 * 1024;
const L = BOOTBLOCK_LAYOUT;
const SOURCE = readFileSync(
  fileURLToPath(new URL("../../images/bootblock/bootblock.S", import.meta.url)),
  "utf8",
);
/** The parameter block both images include. */
const PARAMS = readFileSync(
  fileURLToPath(new URL("../../images/bootblock-params.inc", import.meta.url)),
  "utf8",
);
const AARCH64_SOURCE = fileURLToPath(
  new URL("../../images/bootblock-aarch64/bootblock.S", import.meta.url),
);

/** `.set NAME, VALUE` constants of bootblock.S (numbers, no expressions). */
function asmConstants(source: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of source.matchAll(/^\s*\.set\s+(\w+),\s*(0x[0-9a-f]+|\d+)\b/gim)) {
    out.set(m[1] ?? "", Number(m[2]));
  }
  return out;
}

/** `/* +0xNN name *\/` offsets of the parameter block (bootblock-params.inc), in order. */
function asmParamOffsets(source: string): number[] {
  const block = source.slice(source.indexOf("params:"), source.indexOf("params_end:"));
  return [...block.matchAll(/\/\*\s*\+(0x[0-9a-f]+)/gi)].map((m) => Number(m[1]));
}

describe("BOOTBLOCK_LAYOUT mirrors bootblock.S", () => {
  const c = asmConstants(SOURCE);
  test("status block: address, every field, size and version", () => {
    const F = L.statusFields;
    expect(c.get("STATUS")).toBe(L.statusAddress);
    expect(c.get("PASS_COUNTER")).toBe(L.passCounterAddress);
    expect(L.passCounterAddress).toBe(L.statusAddress + F.passCounter);
    expect(c.get("PAGES_WRITTEN")).toBe(L.statusAddress + F.pagesWritten);
    expect(c.get("PROGRESS_TSC")).toBe(L.statusAddress + F.progressTsc);
    expect(c.get("TSC_HZ")).toBe(L.statusAddress + F.tscHz);
    expect(c.get("ASKED_RATE")).toBe(L.statusAddress + F.pagesPerSecond);
    expect(c.get("SCHED_RESTARTS")).toBe(L.statusAddress + F.scheduleRestarts);
    expect(c.get("CAL_SPREAD")).toBe(L.statusAddress + F.calibrationSpreadPpm);
    expect(c.get("STATUS_VERSION")).toBe(L.statusAddress + F.version);
    expect(c.get("CAL_REJECTED")).toBe(L.statusAddress + F.calibrationRejected);
    expect(c.get("STATUS_SIZE")).toBe(L.statusSize);
    expect(SOURCE).toContain(`movl\t$${L.statusVersion}, STATUS_VERSION`);
    // Below the code (0x8000) and clear of the stack, which grows down from 0x7c00.
    expect(L.statusAddress + L.statusSize).toBeLessThan(0x7800);
  });

  test("parameter block: every field offset, in order, and the calibration constants", () => {
    const F = L.paramFields;
    expect(SOURCE).toContain('.include "bootblock-params.inc"');
    expect(readFileSync(AARCH64_SOURCE, "utf8")).toContain('.include "bootblock-params.inc"');
    expect(asmParamOffsets(PARAMS)).toEqual([
      F.magic,
      F.version,
      F.size,
      F.rangeStart,
      F.rangeEnd,
      F.pageSpin,
      F.passSpin,
      F.dirtyRatePagesPerSecond,
      F.maxLagUs,
    ]);
    expect(PARAMS).toMatch(new RegExp(`\\.long\\s+${L.paramVersion}\\s+/\\* \\+0x08`));
    expect(c.get("PIT_HZ")).toBe(L.calibration.pitHz);
    expect(c.get("CAL_LATCH")).toBe(L.calibration.latch);
    // The latch is a 16-bit PIT count.
    expect(L.calibration.latch).toBeLessThan(0x10000);
    expect(SOURCE).toContain(`cmpl\t$${L.calibration.rounds}, %ebx`);
    expect(c.get("CAL_ATTEMPTS")).toBe(L.calibration.attempts);
    expect(2 ** (c.get("CAL_BRACKET_SHIFT") ?? 0)).toBe(L.calibration.maxBracket);
    // The fault marker is the aarch64 image's own (its exception vectors).
    const { pass, fault, ...messages } = L.markers;
    expect(readFileSync(AARCH64_SOURCE, "utf8")).toContain(
      `.asciz\t"${fault.replace("\n", "\\n")}`,
    );
    expect(SOURCE).toContain(`movb\t$'${pass}', %al`);
    for (const marker of Object.values(messages)) {
      expect(SOURCE).toContain(`.asciz\t"${marker.replace("\n", "\\n")}"`);
    }
  });
});

describe("bootblock image", () => {
  test("the committed image carries a v2 parameter block with its defaults and a reset vector", () => {
    const image = readFileSync(BOOTBLOCK_IMAGE_PATH);
    expect(image.length).toBe(L.imageSize);
    const block = image.subarray(L.paramBlockOffset, L.paramBlockOffset + L.paramBlockSize);
    expect(block.subarray(0, 8).toString("latin1")).toBe(L.paramMagic);
    expect(block.readUInt32LE(L.paramFields.version)).toBe(L.paramVersion);
    expect(block.readUInt32LE(L.paramFields.size)).toBe(L.paramBlockSize);
    expect(block.readBigUInt64LE(L.paramFields.dirtyRatePagesPerSecond)).toBe(0n);
    expect(block.readBigUInt64LE(L.paramFields.maxLagUs)).toBe(BigInt(L.defaultMaxLagUs));
    expect(image.subarray(510, 512)).toEqual(Buffer.from([0x55, 0xaa])); // boot signature
    expect(image[0xfff0]).toBe(0xe9); // near jmp at the reset vector
  });

  test("patching writes every parameter little-endian at its documented offset", () => {
    const image = readFileSync(BOOTBLOCK_IMAGE_PATH);
    patchBootblockImage(image, {
      rangeStart: 2 * MiB,
      rangeEnd: 0xfff0_0000,
      pageSpin: 1000,
      passSpin: 2 ** 40,
      dirtyRatePagesPerSecond: 8192,
      maxLagUs: 5000,
    });
    const block = image.subarray(L.paramBlockOffset);
    expect(block.readBigUInt64LE(L.paramFields.rangeStart)).toBe(BigInt(2 * MiB));
    expect(block.readBigUInt64LE(L.paramFields.rangeEnd)).toBe(0xfff0_0000n);
    expect(block.readBigUInt64LE(L.paramFields.pageSpin)).toBe(1000n);
    expect(block.readBigUInt64LE(L.paramFields.passSpin)).toBe(2n ** 40n);
    expect(block.readBigUInt64LE(L.paramFields.dirtyRatePagesPerSecond)).toBe(8192n);
    expect(block.readBigUInt64LE(L.paramFields.maxLagUs)).toBe(5000n);
    // Defaults for what is left out.
    patchBootblockImage(image, { rangeEnd: 64 * MiB });
    expect(block.readBigUInt64LE(L.paramFields.rangeStart)).toBe(BigInt(L.defaultRangeStart));
    expect(block.readBigUInt64LE(L.paramFields.pageSpin)).toBe(0n);
    expect(block.readBigUInt64LE(L.paramFields.dirtyRatePagesPerSecond)).toBe(0n);
    expect(block.readBigUInt64LE(L.paramFields.maxLagUs)).toBe(BigInt(L.defaultMaxLagUs));
  });

  test("aarch64: the range lives above virt's RAM base, and only -bios boots it", () => {
    const A = bootblockArch("aarch64");
    expect(A.ramBase).toBe(0x4000_0000);
    expect(validateBootblockParams({ rangeEnd: A.ramBase + 64 * MiB }, "aarch64").rangeStart).toBe(
      A.ramBase + MiB,
    );
    expect(() => validateBootblockParams({ rangeEnd: 64 * MiB }, "aarch64")).toThrow(
      /inside 0x40100000\.\.0x140000000: RAM base \+ 1 MiB\.\.4 GiB on aarch64/,
    );
    expect(() => bootblockQemuArgs("x.bin", { boot: "disk", arch: "aarch64" })).toThrow(
      /boots only as bios/,
    );
  });

  test("parameters the guest would reject are rejected here", () => {
    const image = readFileSync(BOOTBLOCK_IMAGE_PATH);
    expect(() => patchBootblockImage(image, { rangeEnd: 100 * MiB + 1 })).toThrow(/aligned/);
    expect(() => patchBootblockImage(image, { rangeStart: 0x8000, rangeEnd: 4 * MiB })).toThrow(
      /1 MiB..4 GiB/,
    );
    expect(() => patchBootblockImage(image, { rangeEnd: 2 ** 32 + 4096 })).toThrow(/4 GiB/);
    expect(() => patchBootblockImage(image, { rangeEnd: 8 * MiB, pageSpin: -1 })).toThrow(
      /pageSpin/,
    );
    expect(() =>
      patchBootblockImage(image, { rangeEnd: 8 * MiB, dirtyRatePagesPerSecond: 1.5 }),
    ).toThrow(/dirtyRatePagesPerSecond/);
    expect(() => patchBootblockImage(image, { rangeEnd: 8 * MiB, maxLagUs: -5 })).toThrow(
      /maxLagUs/,
    );
    expect(() => patchBootblockImage(new Uint8Array(L.imageSize), { rangeEnd: 8 * MiB })).toThrow(
      /no v2 parameter block/,
    );
  });

  test("QEMU arguments for both boot paths", () => {
    expect(bootblockQemuArgs("/t/bb.bin", { boot: "bios" })).toEqual(["-bios", "/t/bb.bin"]);
    expect(bootblockQemuArgs("/t/a,b.img", { boot: "disk" })).toEqual([
      "-drive",
      "file=/t/a,,b.img,format=raw,if=ide,index=0,media=disk",
    ]);
  });

  test("serial markers: firmware noise, passes after the last start, restarts, errors", () => {
    expect(parseBootblockSerial("")).toEqual({ started: false, passes: 0, restarts: 0 });
    expect(parseBootblockSerial("SeaBIOS B\nMIGT:START\nBBB")).toEqual({
      started: true,
      passes: 3,
      restarts: 0,
    });
    expect(parseBootblockSerial("MIGT:START\nBBBBMIGT:START\nB")).toEqual({
      started: true,
      passes: 1,
      restarts: 1,
    });
    expect(parseBootblockSerial("MIGT:EPARAM\n").error).toBe("MIGT:EPARAM");
    expect(parseBootblockSerial("MIGT:ECALIB\n").error).toBe("MIGT:ECALIB");
    // Every error marker has its meaning for messages.
    const { start, pass, ...errors } = L.markers;
    expect(Object.values(errors).map((m) => m.trim())).toEqual(Object.keys(BOOTBLOCK_ERRORS));
  });
});

// ---------------------------------------------------------------- real QEMU

const QEMU = process.env.QEMU_SYSTEM_X86_64 ?? "qemu-system-x86_64";
const qemuMissing = spawnSync(QEMU, ["--version"], { stdio: "ignore" }).status !== 0;
const shmMissing = !existsSync("/dev/shm");
const kvmMissing = !canUse("/dev/kvm");

function canUse(path: string): boolean {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

const RAM_MIB = 128;
const RANGE_START = 1 * MiB;
const RANGE_END = 100 * MiB;

/** Every thread of the process is in stopped state ("T" in /proc/<pid>/task/<tid>/stat). */
function allThreadsStopped(pid: number): boolean {
  return readdirSync(`/proc/${pid}/task`).every((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
  });
}

async function bootStopAndCheck(accel: "tcg" | "kvm", boot: BootblockBoot): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "bootblock-"));
  const shm = `/dev/shm/migtest-bootblock-${process.pid}-${randomUUID().slice(0, 8)}`;
  let child: ChildProcess | undefined;
  let exited = false;
  let stderr = "";
  try {
    const image = join(dir, "bootblock.bin");
    const serialPath = join(dir, "serial.log");
    await writeBootblockImage({ rangeStart: RANGE_START, rangeEnd: RANGE_END }, image);
    const args = [
      "-accel",
      accel,
      "-machine",
      "pc,memory-backend=pc.ram",
      "-m",
      String(RAM_MIB),
      "-object",
      `memory-backend-file,id=pc.ram,size=${RAM_MIB}M,mem-path=${shm},share=on`,
      "-nodefaults",
      "-display",
      "none",
      "-serial",
      `file:${serialPath}`,
      ...bootblockQemuArgs(image, { boot }),
    ];
    child = spawn(QEMU, args, { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("exit", () => {
      exited = true;
    });
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not start ${QEMU}`);

    // Start marker plus a few passes; the disk path under software KVM boots in seconds.
    const deadline = Date.now() + 60_000;
    let serial = "";
    for (;;) {
      serial = await readFile(serialPath, "latin1").catch(() => "");
      const state = parseBootblockSerial(serial);
      if (state.error) throw new Error(`guest reported ${state.error}; serial: ${serial}`);
      if (state.passes >= 3) break;
      if (exited)
        throw new Error(`QEMU exited before 3 passes; stderr: ${stderr}; serial: ${serial}`);
      if (Date.now() > deadline) {
        throw new Error(
          `no 3 passes within 60 s (${accel}, ${boot}); serial: ${JSON.stringify(serial)}`,
        );
      }
      await sleep(20);
    }

    process.kill(pid, "SIGSTOP");
    while (!allThreadsStopped(pid)) await sleep(5);
    const state = parseBootblockSerial(await readFile(serialPath, "latin1"));
    expect(state.restarts).toBe(0);

    const ram = await readGuestRamFile(shm, 0, RAM_MIB * MiB);
    const status = readBootblockStatus(ram, 0);
    expect(status, "status block magic at 0x7000").toBeDefined();
    const passCounter = status?.passCounter ?? -1;
    // The counter is incremented just before the pass marker is written.
    expect([state.passes, state.passes + 1]).toContain(passCounter);

    const opts = { base: 0, rangeStart: RANGE_START, rangeEnd: RANGE_END, passCounter };
    const good = checkBootblockRam(ram, opts);
    expect(good.ok, good.summary).toBe(true);
    expect(good.pagesChecked).toBe((RANGE_END - RANGE_START) / L.pageSize);

    // One byte changed in the backing file must be found at exactly that address.
    const poked = RANGE_START + 1234 * L.pageSize;
    const before = ram[poked] ?? 0;
    const handle = await open(shm, "r+");
    try {
      await handle.write(Buffer.from([before ^ 0x80]), 0, 1, poked);
    } finally {
      await handle.close();
    }
    const bad = checkBootblockRam(await readGuestRamFile(shm, 0, RAM_MIB * MiB), opts);
    expect(bad.ok).toBe(false);
    expect(bad.badPages).toBe(1);
    expect(bad.firstBad).toEqual([{ address: poked, expected: before, actual: before ^ 0x80 }]);
  } finally {
    if (child?.pid !== undefined && !exited) {
      const gone = new Promise((resolve) => child?.once("exit", resolve));
      process.kill(child.pid, "SIGKILL");
      await gone;
    }
    await rm(shm, { force: true });
    await rm(dir, { recursive: true, force: true });
  }
}

describe("bootblock under QEMU", () => {
  test.skipIf(qemuMissing || shmMissing)(
    "TCG, -bios: passes run, RAM checks OK, a poked byte is found (skipped without QEMU or /dev/shm)",
    () => bootStopAndCheck("tcg", "bios"),
  );
  test.skipIf(qemuMissing || shmMissing)(
    "TCG, SeaBIOS from a raw disk: same checks (skipped without QEMU or /dev/shm)",
    () => bootStopAndCheck("tcg", "disk"),
  );
  test.skipIf(qemuMissing || shmMissing || kvmMissing)(
    "KVM, -bios: same checks (skipped without QEMU, /dev/shm or a usable /dev/kvm)",
    () => bootStopAndCheck("kvm", "bios"),
  );
});
