// `qemu-migtest probe`: what this host and each QEMU binary can do for migration testing.
// Binaries are asked directly (-version, -accel help) and through a short-lived QEMU with no
// guest (-machine none): capabilities, parameters and their defaults, and schema features such
// as the system-wide `remaining`, found in the binary's own query-qmp-schema.

import { existsSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { detectKvm, type KvmStatus, kvmArchMismatch } from "../qemu/accel.ts";
import { hostQemuArch, QEMU_ARCHES, type QemuArch } from "../qemu/arch.ts";
import { probeQemuBinary } from "../qemu/binary.ts";
import { Machine } from "../qemu/machine.ts";
import { HOST_QEMU_COMMAND, installedMatrix, resolveQemuBinary } from "../qemu/matrix.ts";
import { migrationFeatures } from "../qmp/migration-features.ts";
import type { MigrationCapabilityStatus, MigrationParameters } from "../qmp/qapi.ts";
import { MiB } from "../util/units.ts";
import { vfioConfigFromEnv } from "../vfio/config.ts";
import { probeVfioHost } from "../vfio/probe.ts";
import { type OptionSpec, parseFlags } from "./args.ts";
import { table } from "./format.ts";

export const probeOptions = {
  binary: { type: "string", multiple: true },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies OptionSpec;

const probeUsage = `usage: qemu-migtest probe [--binary SPEC]... [--json]

The host (KVM, VFIO, /dev/shm) and each QEMU binary: version, accelerators, whether KVM is
usable with it, migration capabilities and parameters (with defaults), and schema features
(top-level remaining, destination RAM stats, migrate channels, exit-on-error).

  --binary SPEC   a path, a command on PATH or a matrix name (7.2, 10.0, 11.1); repeatable.
                  Default: qemu-system-x86_64 plus every installed matrix binary
  --json          print JSON instead of tables
  -h, --help      this text`;

export interface HostProbe {
  kernel: string;
  cpus: number;
  memoryGiB: number;
  kvm: KvmStatus;
  /** The VFIO runner's own probe (harness/vfio/probe.ts), for the configured devices. */
  vfio: { ready: boolean; reason: string };
  devShm: boolean;
  setpriv: boolean;
}

export interface BinaryProbe {
  spec: string;
  path: string;
  version: string;
  arch: QemuArch;
  accels: string[];
  kvm: string;
  exitWithParent: boolean;
  error?: string;
  capabilities?: string[];
  parameters?: MigrationParameters;
  features?: {
    topLevelRemaining: boolean;
    destinationRamStats: boolean;
    migrateHasChannels: boolean;
    migrateIncomingHasExitOnError: boolean;
    migrationStatuses: string[];
  };
}

function vfioReadiness(): { ready: boolean; reason: string } {
  try {
    const r = probeVfioHost(vfioConfigFromEnv(), { guestRamBytes: 128 * MiB });
    return { ready: r.ready, reason: r.reason };
  } catch (error) {
    return { ready: false, reason: (error as Error).message };
  }
}

function probeHost(): HostProbe {
  return {
    kernel: release(),
    cpus: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kvm: detectKvm(),
    vfio: vfioReadiness(),
    devShm: existsSync("/dev/shm"),
    setpriv: existsSync("/usr/bin/setpriv"),
  };
}

async function probeBinary(spec: string, kvm: KvmStatus): Promise<BinaryProbe> {
  const resolved = await resolveQemuBinary(spec);
  const info = await probeQemuBinary(resolved.path);
  const probe: BinaryProbe = {
    spec,
    path: info.path,
    version: info.version,
    arch: info.arch,
    accels: info.accels,
    kvm: !info.accels.includes("kvm")
      ? "no (built without KVM)"
      : kvmArchMismatch(info.arch, hostQemuArch())
        ? `no (${kvmArchMismatch(info.arch, hostQemuArch())})`
        : kvm.hardware
          ? `yes (${kvm.backend})`
          : kvm.usable
            ? `software only (${kvm.backend}): tcg is used by default`
            : "no (/dev/kvm not usable)",
    exitWithParent: info.exitWithParent,
  };
  let machine: Machine | undefined;
  try {
    machine = await Machine.launch({
      name: "probe",
      binary: info.path,
      accel: "tcg",
      machineType: "none",
      memoryMiB: 16,
    });
    const [caps, parameters, schema] = await Promise.all([
      machine.qmp.execute<MigrationCapabilityStatus[]>("query-migrate-capabilities"),
      machine.qmp.execute<MigrationParameters>("query-migrate-parameters"),
      machine.schema(),
    ]);
    const f = migrationFeatures(schema);
    probe.capabilities = caps.map((c) => c.capability);
    probe.parameters = parameters;
    probe.features = {
      topLevelRemaining: f.topLevelRemaining,
      destinationRamStats: f.destinationRamStats,
      migrateHasChannels: f.migrateHasChannels,
      migrateIncomingHasExitOnError: f.migrateIncomingHasExitOnError,
      migrationStatuses: f.migrationStatuses,
    };
  } catch (error) {
    probe.error = (error as Error).message;
  } finally {
    await machine?.shutdown();
  }
  return probe;
}

/** The host's QEMU plus every installed matrix binary of every target, once each by path. */
async function defaultSpecs(): Promise<string[]> {
  const matrix = await installedMatrix(process.env, QEMU_ARCHES);
  const specs: string[] = [];
  const paths = new Set<string>();
  // A matrix name means its x86_64 binary: the other targets' are given by path.
  for (const spec of [
    HOST_QEMU_COMMAND,
    ...matrix.map((m) => (m.arch === "x86_64" ? m.name : m.path)),
  ]) {
    const path = await resolveQemuBinary(spec).then(
      (r) => r.path,
      () => undefined,
    );
    if (path && !paths.has(path)) {
      paths.add(path);
      specs.push(spec);
    }
  }
  return specs;
}

const yesNo = (b: boolean | undefined) => (b === undefined ? "?" : b ? "yes" : "no");

function formatProbe(host: HostProbe, binaries: BinaryProbe[]): string {
  const out: string[] = [];
  out.push(
    table([
      ["host", `Linux ${host.kernel}, ${host.cpus} CPUs, ${host.memoryGiB} GiB`],
      [
        "KVM",
        `${host.kvm.usable ? (host.kvm.hardware ? "hardware" : "software") : "not usable"}: ${host.kvm.reason}`,
      ],
      ["VFIO", `${host.vfio.ready ? "ready" : "not ready"}: ${host.vfio.reason}`],
      [
        "/dev/shm",
        host.devShm
          ? "yes (RAM check reads guest RAM there)"
          : "no: the RAM check cannot read guest RAM",
      ],
      ["setpriv", host.setpriv ? "yes (QEMU dies with the harness)" : "no: install util-linux"],
    ]),
  );
  const head = ["", ...binaries.map((b) => b.spec)];
  const row = (label: string, f: (b: BinaryProbe) => string) => [label, ...binaries.map(f)];
  out.push(
    `\n${table(
      [
        head,
        row("version", (b) => b.version),
        row("target", (b) => b.arch),
        row("path", (b) => b.path),
        row("accelerators", (b) => b.accels.join(", ")),
        row("KVM usable", (b) => b.kvm),
        row("exit-with-parent", (b) => yesNo(b.exitWithParent)),
        row("remaining (system-wide)", (b) => yesNo(b.features?.topLevelRemaining)),
        row("destination RAM stats", (b) => yesNo(b.features?.destinationRamStats)),
        row("migrate channels", (b) => yesNo(b.features?.migrateHasChannels)),
        row("incoming exit-on-error", (b) => yesNo(b.features?.migrateIncomingHasExitOnError)),
        row("migration statuses", (b) => String(b.features?.migrationStatuses.length ?? "?")),
        row("capabilities", (b) => String(b.capabilities?.length ?? "?")),
        row("parameters", (b) => String(Object.keys(b.parameters ?? {}).length)),
        ...(binaries.some((b) => b.error) ? [row("error", (b) => b.error ?? "")] : []),
      ],
      { header: true },
    )}`,
  );
  const caps = [...new Set(binaries.flatMap((b) => b.capabilities ?? []))].sort();
  out.push(
    `\n${table(
      [
        ["capability", ...binaries.map((b) => b.spec)],
        ...caps.map((c) => [
          c,
          ...binaries.map((b) => (b.capabilities?.includes(c) ? "yes" : "-")),
        ]),
      ],
      { header: true },
    )}`,
  );
  const params = [...new Set(binaries.flatMap((b) => Object.keys(b.parameters ?? {})))].sort();
  out.push(
    `\n${table(
      [
        ["parameter (default)", ...binaries.map((b) => b.spec)],
        ...params.map((p) => [
          p,
          ...binaries.map((b) =>
            b.parameters && p in b.parameters ? JSON.stringify(b.parameters[p]) : "-",
          ),
        ]),
      ],
      { header: true },
    )}`,
  );
  return out.join("\n");
}

export async function probeCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags("qemu-migtest probe", argv, probeOptions);
  if (values.help) {
    console.log(probeUsage);
    return 0;
  }
  const specs = [...(values.binary ?? []), ...positionals];
  const host = probeHost();
  const binaries: BinaryProbe[] = [];
  // One at a time: each starts a QEMU, and two cores are enough for one.
  for (const spec of specs.length > 0 ? specs : await defaultSpecs()) {
    binaries.push(await probeBinary(spec, host.kvm));
  }
  console.log(
    values.json ? JSON.stringify({ host, binaries }, null, 2) : formatProbe(host, binaries),
  );
  return binaries.some((b) => b.error) ? 1 : 0;
}
