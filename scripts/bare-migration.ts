// The floor a migration test can reach on this host: two QEMUs with the same paced boot-block
// guest as the harness's, migrate over loopback tcp, poll query-migrate until completed, quit.
// No HMP, no schema, no checks, no timeline: what `npm run bench -- --scenario` compares the
// harness's scenario against. Standalone: npx tsx scripts/bare-migration.ts [binary] [accel]

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { writeBootblockImage } from "../harness/guest/bootblock.ts";
import { defaultParentDir } from "../harness/qemu/machine.ts";
import { freeLoopbackPort } from "../harness/transport/transport.ts";

const MiB = 1024 * 1024;

export interface BareOptions {
  binary: string;
  accel: "tcg" | "kvm";
  memoryMiB: number;
  /** The guest's page write rate, as the boot block's parameter block takes it. */
  bootblock: Parameters<typeof writeBootblockImage>[0];
}

/** One line-oriented QMP connection: just enough to send commands and read their returns. */
class BareQmp {
  private buffer = "";
  private waiting: ((reply: Record<string, unknown>) => void)[] = [];
  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      for (let nl = this.buffer.indexOf("\n"); nl >= 0; nl = this.buffer.indexOf("\n")) {
        const msg = JSON.parse(this.buffer.slice(0, nl)) as Record<string, unknown>;
        this.buffer = this.buffer.slice(nl + 1);
        if ("return" in msg || "error" in msg) this.waiting.shift()?.(msg);
      }
    });
  }

  static async open(path: string): Promise<BareQmp> {
    for (let i = 0; ; i++) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path, () => resolve(s));
          s.once("error", reject);
        });
        const qmp = new BareQmp(socket);
        await qmp.execute("qmp_capabilities");
        return qmp;
      } catch (error) {
        if (i > 500) throw error;
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  }

  execute(command: string, args?: Record<string, unknown>): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.waiting.push((reply) =>
        "error" in reply ? reject(new Error(JSON.stringify(reply.error))) : resolve(reply),
      );
      this.socket.write(`${JSON.stringify({ execute: command, arguments: args })}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

function launch(o: BareOptions, dir: string, name: string, image: string): ChildProcess {
  const args = [
    ...["-machine", "pc", "-accel", o.accel, "-m", `${o.memoryMiB}M`, "-nodefaults"],
    ...["-display", "none", "-bios", image, "-serial", `file:${join(dir, `${name}.serial`)}`],
    ...["-qmp", `unix:${join(dir, `${name}.qmp`)},server=on,wait=off`],
    ...(name === "destination" ? ["-incoming", "defer"] : []),
  ];
  return spawn(o.binary, args, { stdio: "ignore" });
}

function exitOf(c: ChildProcess): Promise<unknown> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((r) => c.once("exit", r));
}

/** One bare migration, launch to quit; resolves with its wall time in ms. */
export async function bareMigration(o: BareOptions): Promise<number> {
  const started = performance.now();
  const dir = mkdtempSync(join(defaultParentDir(), "bare-"));
  const image = join(dir, "bootblock.bin");
  const children: ChildProcess[] = [];
  try {
    await writeBootblockImage(o.bootblock, image);
    children.push(launch(o, dir, "destination", image), launch(o, dir, "source", image));
    const [dst, src] = await Promise.all([
      BareQmp.open(join(dir, "destination.qmp")),
      BareQmp.open(join(dir, "source.qmp")),
    ]);
    // The same workload as the scenario's: migrate once the guest has filled its range.
    const serial = join(dir, "source.serial");
    while (!(existsSync(serial) && readFileSync(serial, "latin1").includes("MIGT:START"))) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const uri = `tcp:127.0.0.1:${await freeLoopbackPort()}`;
    await src.execute("migrate-set-parameters", {
      "max-bandwidth": 1024 * MiB,
      "downtime-limit": 30_000,
    });
    await dst.execute("migrate-incoming", { uri });
    await src.execute("migrate", { uri });
    for (;;) {
      const info = (await src.execute("query-migrate")).return as { status?: string };
      if (info.status === "completed") break;
      if (info.status === "failed") throw new Error("bare migration failed");
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all([src, dst].map((q) => q.execute("quit").catch(() => undefined)));
    await Promise.all(children.map(exitOf));
    src.close();
    dst.close();
    return performance.now() - started;
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const [binary = "qemu-system-x86_64", accel = "tcg"] = process.argv.slice(2);
  const ms = await bareMigration({
    binary,
    accel: accel as "tcg" | "kvm",
    memoryMiB: 128,
    bootblock: { rangeEnd: 112 * MiB },
  });
  console.log(`bare migration: ${ms.toFixed(0)} ms`);
}
