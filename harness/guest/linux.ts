// The optional Linux guest: Debian's kernel booted as PVH with an initramfs of busybox, the virtio
// modules and images/linux/workload.c, built into the cache by scripts/build-linux-image (never
// committed). This module finds the built image (or says why there is none), builds the QEMU
// arguments (virtio-net, virtio-blk, a second serial port for commands), reads the workload's
// serial lines and asks it to verify its memory.

import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createConnection, type Socket } from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import type { Machine } from "../qemu/machine.ts";

export const LINUX_BUILD_COMMAND = "scripts/build-linux-image";

/** The workload's sources: the image records their hash, so an edit makes the image stale. */
const SOURCES = ["init", "workload.c"].map((f) =>
  fileURLToPath(new URL(`../../images/linux/${f}`, import.meta.url)),
);

export interface LinuxImage {
  dir: string;
  kernel: string;
  initrd: string;
  /** "pvh": the uncompressed vmlinux entered through its PVH note; "bzimage": the compressed one. */
  boot: "pvh" | "bzimage";
  bootNote: string;
  kernelRelease: string;
}

export type LinuxImageLookup = { image: LinuxImage } | { reason: string };

export function linuxImageDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.QEMU_MIGTEST_CACHE || join(env.HOME || homedir(), ".cache", "qemu-migtest");
  return join(base, "linux");
}

/** sha256 of the sources in the order the build script hashes them. */
export function linuxSourcesHash(paths: readonly string[] = SOURCES): string {
  const h = createHash("sha256");
  for (const p of paths) h.update(readFileSync(p));
  return h.digest("hex");
}

/** "key=value" lines. */
export function parseManifest(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

/** The built image, or one sentence saying why it cannot be used and how to build it. */
export function locateLinuxImage(
  env: NodeJS.ProcessEnv = process.env,
  sourcesHash: string = linuxSourcesHash(),
): LinuxImageLookup {
  const dir = linuxImageDir(env);
  const build = `build it with ${LINUX_BUILD_COMMAND} (downloads Debian's linux-image-amd64 and busybox-static with apt-get download, about 72 MB, into the cache; installs nothing)`;
  const manifestPath = join(dir, "manifest");
  if (!existsSync(manifestPath)) return { reason: `no Linux guest image in ${dir}: ${build}` };
  const m = parseManifest(readFileSync(manifestPath, "utf8"));
  const kernel = join(dir, "kernel");
  const initrd = join(dir, "initrd.gz");
  for (const f of [kernel, initrd]) {
    if (!existsSync(f)) return { reason: `the Linux guest image in ${dir} lacks ${f}: ${build}` };
  }
  const built = /\bsources=([0-9a-f]{64})\b/.exec(m.inputs ?? "")?.[1];
  if (built !== sourcesHash) {
    return {
      reason: `the Linux guest image in ${dir} was built from other images/linux sources (${built?.slice(0, 12) ?? "unknown"}, now ${sourcesHash.slice(0, 12)}): rebuild it with ${LINUX_BUILD_COMMAND}`,
    };
  }
  const boot = m.boot === "bzimage" ? "bzimage" : "pvh";
  return {
    image: {
      dir,
      kernel,
      initrd,
      boot,
      bootNote: m["boot-note"] ?? "",
      kernelRelease: m["kernel-release"] ?? "unknown",
    },
  };
}

/** The cached image's kernel and initrd, or undefined (locateLinuxImage says why). */
export function linuxImagePaths(
  env: NodeJS.ProcessEnv = process.env,
): { kernel: string; initrd: string } | undefined {
  const found = locateLinuxImage(env);
  return "image" in found ? { kernel: found.image.kernel, initrd: found.image.initrd } : undefined;
}

export interface NetdevChoice {
  /** The -netdev value, without the id. */
  netdev: string;
  reason: string;
}

/** `-netdev help` output → backend names. */
export function parseNetdevHelp(text: string): string[] {
  return text
    .split("\n")
    .slice(1)
    .map((l) => l.trim())
    .filter((l) => /^[a-z][\w-]*$/.test(l));
}

/**
 * slirp (`user`) when the binary has it: its state is part of the migration stream too;
 * restrict=on keeps the guest off every network. Else a hub port, which every build has.
 */
export function chooseNetdev(backends: readonly string[]): NetdevChoice {
  if (backends.includes("user")) {
    return { netdev: "user,restrict=on", reason: "user (slirp), restricted to the guest" };
  }
  return {
    netdev: "hubport,hubid=0",
    reason: `this QEMU has no user (slirp) netdev (it has: ${backends.join(", ") || "none"}): virtio-net sits on an empty hub`,
  };
}

const netdevCache = new Map<string, Promise<NetdevChoice>>();

export function netdevFor(binaryPath: string): Promise<NetdevChoice> {
  let choice = netdevCache.get(binaryPath);
  if (!choice) {
    choice = execa(binaryPath, ["-netdev", "help"], { reject: false, timeout: 15_000 }).then((r) =>
      chooseNetdev(parseNetdevHelp(`${r.stdout}`)),
    );
    netdevCache.set(binaryPath, choice);
  }
  return choice;
}

export interface WorkloadParams {
  /** Memory the workload keeps patterns in. */
  mib: number;
  /** MiB dirtied per second; 0 = as fast as the vCPU goes. */
  rateMiBps: number;
}

export interface LinuxGuestOptions {
  image: Pick<LinuxImage, "kernel" | "initrd">;
  workload: WorkloadParams;
  /** Raw disk behind virtio-blk; the same file on both sides (shared storage). */
  disk: string;
  /** -netdev value without id (netdevFor / chooseNetdev). */
  netdev: string;
  /** More kernel command-line words. */
  cmdline?: string[];
}

/** QEMU option values escape a comma by doubling it. */
function optValue(v: string): string {
  return v.replaceAll(",", ",,");
}

export function workloadCmdline(w: WorkloadParams): string[] {
  for (const [k, v] of Object.entries(w)) {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new RangeError(`workload ${k} must be a non-negative integer, got ${v}`);
    }
  }
  if (w.mib < 1) throw new RangeError("workload mib must be at least 1");
  return [`workload.mib=${w.mib}`, `workload.rate=${w.rateMiBps}`];
}

/** Arguments for both sides alike: kernel, initrd, command line, virtio-net, virtio-blk. */
export function linuxGuestArgs(o: LinuxGuestOptions): string[] {
  // panic=-1 with -no-reboot: a guest that panics ends QEMU instead of booting again unseen.
  // quiet: warnings and panics still reach the console, the boot chatter does not.
  const append = [
    "console=ttyS0",
    "quiet",
    "panic=-1",
    ...workloadCmdline(o.workload),
    ...(o.cmdline ?? []),
  ];
  return [
    "-no-reboot",
    "-kernel",
    o.image.kernel,
    "-initrd",
    o.image.initrd,
    "-append",
    append.join(" "),
    "-netdev",
    `${o.netdev},id=net0`,
    "-device",
    "virtio-net-pci,netdev=net0",
    "-drive",
    `file=${optValue(o.disk)},format=raw,if=none,id=disk0`,
    "-device",
    "virtio-blk-pci,drive=disk0",
  ];
}

/**
 * The command port: COM2 (ttyS1 in the guest) on a listening Unix socket. Per side, since each
 * QEMU needs its own socket; the device is the same on both, as migration requires.
 */
export function linuxControlArgs(socketPath: string): string[] {
  return [
    "-chardev",
    `socket,id=ctl,path=${optValue(socketPath)},server=on,wait=off`,
    "-device",
    "isa-serial,chardev=ctl,index=1",
  ];
}

export const LINUX_DISK_SIGNATURE = "MIGTDISK";

/** A small raw disk with a signature in its first sector, which the guest's init reads. */
export async function createLinuxDisk(path: string, sizeMiB = 8): Promise<void> {
  const buf = Buffer.alloc(sizeMiB << 20);
  buf.write(`${LINUX_DISK_SIGNATURE}-v1`, 0, "ascii");
  await writeFile(path, buf);
}

export interface WorkloadReady {
  mib: number;
  rate: number;
  pages: number;
}

export interface WorkloadVerdict {
  id: string;
  pass: boolean;
  line: string;
  fields: Record<string, string>;
}

export interface WorkloadSerialState {
  /** init's device line: "eth0" / "vda:MIGTDISK-v1..." or "missing". */
  devices?: { net: string; blk: string };
  ready?: WorkloadReady;
  /** Writes in the last progress line. */
  writes?: number;
  verdicts: WorkloadVerdict[];
  /** init's or the workload's complaints, and a kernel panic. */
  errors: string[];
  exitCode?: number;
}

function fieldsOf(words: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const w of words) {
    const eq = w.indexOf("=");
    if (eq > 0) out[w.slice(0, eq)] = w.slice(eq + 1);
  }
  return out;
}

/** Read the guest's console: kernel messages are skipped, init:/workload: lines are parsed. */
export function parseWorkloadSerial(text: string): WorkloadSerialState {
  const state: WorkloadSerialState = { verdicts: [], errors: [] };
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (line.includes("Kernel panic")) state.errors.push(line.trim());
    let m = /^init: devices net=(\S+) blk=(\S+)/.exec(line);
    if (m?.[1] && m[2]) {
      state.devices = { net: m[1], blk: m[2] };
      continue;
    }
    m = /^init: workload exited with code (\d+)/.exec(line);
    if (m?.[1]) {
      state.exitCode = Number(m[1]);
      continue;
    }
    if (/^init: /.test(line)) {
      state.errors.push(line);
      continue;
    }
    if (!line.startsWith("workload: ")) continue;
    const words = line.slice("workload: ".length).split(" ");
    const fields = fieldsOf(words);
    switch (words[0]) {
      case "ready":
        state.ready = {
          mib: Number(fields.mib),
          rate: Number(fields.rate),
          pages: Number(fields.pages),
        };
        break;
      case "progress":
        state.writes = Number(fields.writes);
        break;
      case "verify":
        state.verdicts.push({
          id: words[1] ?? "",
          pass: words[2] === "pass",
          line,
          fields,
        });
        break;
      case "bad":
      case "cannot":
      case "error":
        state.errors.push(line);
        break;
    }
  }
  return state;
}

function indentLines(text: string): string {
  return text
    .trimEnd()
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Poll a machine's serial console until `pick` returns something; fails when QEMU exits, the
 * guest reports an error, or the time runs out, with the console's tail in the message.
 */
export async function waitForWorkload<T>(
  machine: Machine,
  what: string,
  pick: (s: WorkloadSerialState) => T | undefined,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = parseWorkloadSerial(machine.serialText());
    const found = pick(state);
    if (found !== undefined) return found;
    const why = !machine.isRunning()
      ? `QEMU exited (${JSON.stringify(machine.exit)})`
      : state.errors.length > 0
        ? `the guest reported: ${state.errors.join(" | ")}`
        : state.exitCode !== undefined
          ? `the workload exited with code ${state.exitCode}`
          : Date.now() > deadline
            ? `nothing within ${timeoutMs} ms`
            : undefined;
    if (why) {
      const text = machine.serialText().replaceAll("\r", "");
      const guestLines = text
        .split("\n")
        .filter((l) => /^(init|workload): /.test(l))
        .slice(-10);
      throw new Error(
        `${machine.name}: waiting for ${what} on the Linux guest's serial console: ${why}\n  init/workload lines (last 10):\n${indentLines(guestLines.join("\n") || "(none)")}\n  serial tail:\n${indentLines(text.slice(-1536))}\n  stderr tail: ${machine.stderrTail(1024).trim() || "(empty)"}`,
      );
    }
    await delay(100);
  }
}

/** A connection to a side's command port (the listening socket of linuxControlArgs). */
export class WorkloadControl {
  private constructor(
    private readonly socket: Socket,
    readonly path: string,
  ) {}

  static connect(path: string, timeoutMs = 5_000): Promise<WorkloadControl> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`command port ${path}: no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        // Answers are read from the serial console; drain the port so QEMU never blocks on it.
        socket.on("data", () => undefined);
        socket.on("error", () => undefined);
        resolve(new WorkloadControl(socket, path));
      });
      socket.once("error", (e) => {
        clearTimeout(timer);
        reject(new Error(`command port ${path}: ${e.message}`));
      });
    });
  }

  send(command: string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.write(`${command}\n`, (e) => (e ? reject(e) : resolve())),
    );
  }

  close(): void {
    this.socket.destroy();
  }
}

let verifySeq = 0;

/**
 * Ask the workload to check every page it wrote; the verdict is read from `machine`'s serial
 * console, matched by a fresh id so an earlier verdict is never taken for this one.
 */
export async function verifyWorkload(
  machine: Machine,
  control: WorkloadControl,
  timeoutMs = 30_000,
): Promise<WorkloadVerdict> {
  const id = `v${process.pid}-${++verifySeq}`;
  await control.send(`verify ${id}`);
  return waitForWorkload(
    machine,
    `the verdict of "verify ${id}"`,
    (s) => s.verdicts.find((v) => v.id === id),
    timeoutMs,
  );
}
