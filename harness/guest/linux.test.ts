import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterAll, describe, expect, test } from "vitest";
import {
  chooseNetdev,
  createLinuxDisk,
  LINUX_BUILD_COMMAND,
  LINUX_DISK_SIGNATURE,
  linuxControlArgs,
  linuxGuestArgs,
  linuxImagePaths,
  linuxSourcesHash,
  locateLinuxImage,
  parseManifest,
  parseNetdevHelp,
  parseWorkloadSerial,
  workloadCmdline,
} from "./linux.ts";

const tmp = mkdtempSync(join(tmpdir(), "glx-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const image = { kernel: "/c/linux/kernel", initrd: "/c/linux/initrd.gz" };

describe("linuxGuestArgs", () => {
  const args = linuxGuestArgs({
    image,
    workload: { mib: 48, rateMiBps: 8 },
    disk: "/run/a,b/disk.raw",
    netdev: "user,restrict=on",
  });
  const argAfter = (flag: string) => args[args.indexOf(flag) + 1];

  test("boots the kernel and initrd with the workload's parameters on the command line", () => {
    expect(argAfter("-kernel")).toBe(image.kernel);
    expect(argAfter("-initrd")).toBe(image.initrd);
    expect(argAfter("-append")?.split(" ")).toEqual([
      "console=ttyS0",
      "quiet",
      "panic=-1",
      "workload.mib=48",
      "workload.rate=8",
    ]);
    expect(args).toContain("-no-reboot");
  });

  test("adds virtio-net on the given netdev and virtio-blk on the disk (commas doubled)", () => {
    expect(args).toContain("user,restrict=on,id=net0");
    expect(args).toContain("virtio-net-pci,netdev=net0");
    expect(args).toContain("file=/run/a,,b/disk.raw,format=raw,if=none,id=disk0");
    expect(args).toContain("virtio-blk-pci,drive=disk0");
  });

  test("rejects workload parameters the guest would refuse", () => {
    expect(() => workloadCmdline({ mib: 0, rateMiBps: 1 })).toThrow(/at least 1/);
    expect(() => workloadCmdline({ mib: 1.5, rateMiBps: 1 })).toThrow(/mib/);
    expect(() => workloadCmdline({ mib: 4, rateMiBps: -1 })).toThrow(/rateMiBps/);
  });

  test("the command port is COM2 on a listening socket that does not wait for a client", () => {
    expect(linuxControlArgs("/r/lx-1/dst.sock")).toEqual([
      "-chardev",
      "socket,id=ctl,path=/r/lx-1/dst.sock,server=on,wait=off",
      "-device",
      "isa-serial,chardev=ctl,index=1",
    ]);
  });
});

describe("netdev choice", () => {
  const help = "Available netdev backend types:\nsocket\nstream\nhubport\ntap\nuser\nvde\n";

  test("reads the backends from -netdev help", () => {
    expect(parseNetdevHelp(help)).toEqual(["socket", "stream", "hubport", "tap", "user", "vde"]);
  });

  test("user (slirp) restricted when present, else a hub port with the reason", () => {
    expect(chooseNetdev(parseNetdevHelp(help)).netdev).toBe("user,restrict=on");
    const without = chooseNetdev(["socket", "hubport"]);
    expect(without.netdev).toBe("hubport,hubid=0");
    expect(without.reason).toMatch(/no user \(slirp\).*socket, hubport/);
  });
});

describe("locateLinuxImage", () => {
  const cache = join(tmp, "cache");
  const env = { QEMU_MIGTEST_CACHE: cache };
  const dir = join(cache, "linux");
  const hash = "a".repeat(64);

  test("no image: the reason names the build command", () => {
    const r = locateLinuxImage(env, hash);
    expect("reason" in r && r.reason).toMatch(new RegExp(`no Linux guest image in ${dir}`));
    expect("reason" in r && r.reason).toContain(LINUX_BUILD_COMMAND);
    expect(linuxImagePaths(env)).toBeUndefined();
  });

  test("an image built from other sources is stale", () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "kernel"), "");
    writeFileSync(join(dir, "initrd.gz"), "");
    writeFileSync(
      join(dir, "manifest"),
      `inputs=kernel-package=linux-image-6.1.0-1-amd64 6.1.1-1 busybox-static=1:1.35 sources=${"b".repeat(64)}\nboot=pvh\n`,
    );
    const r = locateLinuxImage(env, hash);
    expect("reason" in r && r.reason).toMatch(/other images\/linux sources.*rebuild/);
  });

  test("a current image: kernel, initrd and how it boots", () => {
    writeFileSync(
      join(dir, "manifest"),
      `inputs=kernel-package=k 1 busybox-static=2 sources=${hash}\nboot=bzimage\nboot-note=no PVH note\nkernel-release=6.1.0-9-amd64\n`,
    );
    const r = locateLinuxImage(env, hash);
    expect(r).toEqual({
      image: {
        dir,
        kernel: join(dir, "kernel"),
        initrd: join(dir, "initrd.gz"),
        boot: "bzimage",
        bootNote: "no PVH note",
        kernelRelease: "6.1.0-9-amd64",
      },
    });
  });

  test("the sources hash is the build script's: sha256 of init then workload.c", () => {
    const src = (f: string) => fileURLToPath(new URL(`../../images/linux/${f}`, import.meta.url));
    const expected = execFileSync("sh", [
      "-c",
      'cat "$0" "$1" | sha256sum',
      src("init"),
      src("workload.c"),
    ])
      .toString()
      .split(" ")[0];
    expect(linuxSourcesHash()).toBe(expected);
  });

  test("parseManifest keeps '=' inside values", () => {
    expect(parseManifest("inputs=a=1 b=2\nboot=pvh\n\n")).toEqual({
      inputs: "a=1 b=2",
      boot: "pvh",
    });
  });
});

test("createLinuxDisk writes the signature init reads", async () => {
  const disk = join(tmp, "disk.raw");
  await createLinuxDisk(disk, 1);
  const data = await readFile(disk);
  expect(data.length).toBe(1 << 20);
  expect(data.subarray(0, 8).toString("ascii")).toBe(LINUX_DISK_SIGNATURE);
});

describe("parseWorkloadSerial", () => {
  const serial = [
    "[    1.716856] Run /init as init process",
    "init: devices net=eth0 blk=vda:MIGTDISK-v1......",
    "workload: ready mib=64 rate=16 pages=16384 ctl=/dev/ttyS1",
    "workload: progress writes=20525 passes=1",
    "workload: progress writes=24662 passes=1\r",
    "workload: verify v1 pass pages=16384 writes=25632 passes=1 ms=199",
    "workload: verify v2 fail pages=16384 bad-content=1 bad-sum=1 first-bad=5 gen-total=9 writes=9 ms=2",
  ].join("\n");

  test("devices, ready, last progress and each verdict by id", () => {
    const s = parseWorkloadSerial(serial);
    expect(s.devices).toEqual({ net: "eth0", blk: "vda:MIGTDISK-v1......" });
    expect(s.ready).toEqual({ mib: 64, rate: 16, pages: 16384 });
    expect(s.writes).toBe(24662);
    expect(s.verdicts.map((v) => [v.id, v.pass, v.fields["first-bad"]])).toEqual([
      ["v1", true, undefined],
      ["v2", false, "5"],
    ]);
    expect(s.errors).toEqual([]);
  });

  test("init's complaints, a workload error, an exit and a panic are reported", () => {
    const s = parseWorkloadSerial(
      "init: insmod virtio_net failed\nworkload: cannot open command port /dev/ttyS1: No such file\ninit: workload exited with code 1\n[ 2.0] Kernel panic - not syncing: Attempted to kill init!\n",
    );
    expect(s.exitCode).toBe(1);
    expect(s.errors).toHaveLength(3);
    expect(s.errors[2]).toMatch(/Kernel panic/);
  });
});

// The workload itself, built for the host and driven over stdin (workload.ctl=-).
const gcc = (() => {
  try {
    execFileSync("gcc", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!gcc)(`workload.c on the host${gcc ? "" : " (skipped: no gcc on PATH)"}`, () => {
  const bin = join(tmp, "workload");
  const source = fileURLToPath(new URL("../../images/linux/workload.c", import.meta.url));
  const run = (args: string[], input: string) =>
    execa(bin, args, { input, reject: false, timeout: 20_000 });

  test("builds warning-free, as the image build does", async () => {
    const r = await execa("gcc", ["-O2", "-Wall", "-Wextra", "-Werror", "-o", bin, source], {
      reject: false,
    });
    expect(r.exitCode, `${r.stderr}`).toBe(0);
  });

  test("a region it keeps writing verifies; one flipped bit fails at that page only", async () => {
    const r = await run(
      ["workload.mib=2", "workload.rate=0", "workload.ctl=-"],
      "verify a\nstatus\ncorrupt 3\nverify b\n",
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const s = parseWorkloadSerial(r.stdout);
    expect(s.ready).toEqual({ mib: 2, rate: 0, pages: 512 });
    const [a, b] = s.verdicts;
    expect(a?.pass, a?.line).toBe(true);
    expect(Number(a?.fields.writes)).toBeGreaterThanOrEqual(512);
    expect(b?.pass, b?.line).toBe(false);
    expect(b?.fields).toMatchObject({ "bad-content": "1", "bad-sum": "1", "first-bad": "3" });
  });

  test("refuses a bad parameter with exit code 2", async () => {
    const r = await run(["workload.mib=x", "workload.ctl=-"], "");
    expect(r.exitCode).toBe(2);
    expect(parseWorkloadSerial(r.stdout).errors[0]).toMatch(/bad parameter 'workload.mib=x'/);
  });

  test("holds its rate: about rate x time pages, not as many as it can", async () => {
    // 1 MiB/s = 256 pages/s; over ~1.5 s that is a few hundred writes beyond the initial fill.
    const child = execa(bin, ["workload.mib=1", "workload.rate=1", "workload.ctl=-"], {
      input: undefined,
      stdin: "pipe",
      reject: false,
      timeout: 20_000,
    });
    await new Promise((r) => setTimeout(r, 1500));
    child.stdin?.end("status\n");
    const r = await child;
    const status = /status writes=(\d+)/.exec(`${r.stdout}`);
    const extra = Number(status?.[1]) - 256;
    expect(extra, `${r.stdout}`).toBeGreaterThan(50);
    expect(extra, `${r.stdout}`).toBeLessThan(1000);
  });
});
