// Which QEMU binaries and accelerator the suites run on, decided once per run.
// QEMU_MIGTEST_BINARIES: comma-separated matrix names ("7.2,11.1"), paths or command names
// (default: every installed matrix version, else qemu-system-x86_64 on PATH).
// QEMU_MIGTEST_ARCHES: comma-separated targets (x86_64, aarch64; default: every target with at
// least one installed matrix binary). A matrix name runs on each of them; a path or a command on
// the target it reports (query-target), when that target is selected.
// QEMU_MIGTEST_ACCEL: auto (default), kvm or tcg.

import { AccelError, type AccelRequest, chooseAccel, detectKvm, kvmArchMismatch } from "./accel.ts";
import { hostQemuArch, QEMU_ARCHES, type QemuArch } from "./arch.ts";
import { probeQemuBinary, shortVersion } from "./binary.ts";
import {
  binariesFromEnv,
  installedMatrix,
  isMatrixName,
  QemuResolveError,
  type ResolvedQemu,
  resolveQemuBinary,
  selectedArches,
} from "./matrix.ts";

export interface BinaryUnderTest {
  /** What the user named: a matrix name, a path or a command. */
  spec: string;
  path: string;
  version: string;
  /** The target it emulates, asked of the binary (query-target). */
  arch: QemuArch;
  /** Short label for test names: "7.2", "11.1" (the same on every target; see `arch`). */
  label: string;
  accelRequest: AccelRequest;
  accel: "kvm" | "tcg";
  accelReason: string;
}

/** A binary spec on a target the run does not cover, and why (for the caller to print). */
export interface UnavailableBinary {
  /** The matrix name, path or command. */
  spec: string;
  arch: QemuArch;
  /** One sentence: what is missing or excluded, and how to get it covered. */
  reason: string;
}

export interface BinarySelection {
  /** One per (spec x target), ordered by target (QEMU_ARCHES order: x86_64 first), then spec. */
  binaries: BinaryUnderTest[];
  /**
   * What the selection leaves out, in the same order: a matrix name not installed on a target
   * the run chose by default (not named in QEMU_MIGTEST_ARCHES: that is an error instead), a
   * path or command whose target QEMU_MIGTEST_ARCHES leaves out, a matrix binary for another
   * target than the host's under QEMU_MIGTEST_ACCEL=kvm (KVM cannot run it).
   */
  unavailable: UnavailableBinary[];
  /** The run's targets: QEMU_MIGTEST_ARCHES, or every target with an installed matrix binary. */
  arches: QemuArch[];
  /** Whether `arches` came from QEMU_MIGTEST_ARCHES. */
  archesExplicit: boolean;
}

function accelRequestFromEnv(env: NodeJS.ProcessEnv = process.env): AccelRequest {
  const a = env.QEMU_MIGTEST_ACCEL ?? "auto";
  if (a !== "auto" && a !== "kvm" && a !== "tcg") {
    throw new Error(`QEMU_MIGTEST_ACCEL must be auto, kvm or tcg, not "${a}"`);
  }
  return a;
}

interface Slot {
  spec: string;
  specIndex: number;
  arch: QemuArch;
  /** Named by the user: a path or command, or an arch from QEMU_MIGTEST_ARCHES. */
  required: boolean;
  resolved?: ResolvedQemu;
  unavailable?: string;
}

/** What the run was asked for, read once from the environment and the installed matrix. */
interface Request {
  env: NodeJS.ProcessEnv;
  installed: ResolvedQemu[];
  arches: QemuArch[];
  /** Whether `arches` came from QEMU_MIGTEST_ARCHES. */
  explicit: boolean;
  accelRequest: AccelRequest;
}

/** A matrix name: one slot per selected target, each resolved or saying why not. */
async function matrixSlots(req: Request, spec: string, specIndex: number): Promise<Slot[]> {
  // Nothing installed and no QEMU_MIGTEST_ARCHES: try x86_64, so a named spec says why.
  const targets = req.arches.length > 0 ? req.arches : (["x86_64"] as const);
  const slots = await Promise.all(
    targets.map(async (arch): Promise<Slot> => {
      const slot: Slot = { spec, specIndex, arch, required: req.explicit };
      try {
        slot.resolved =
          req.installed.find((q) => q.name === spec && q.arch === arch) ??
          (await resolveQemuBinary(spec, req.env, arch));
      } catch (e) {
        if (!(e instanceof QemuResolveError)) throw e;
        slot.unavailable = e.message;
      }
      return slot;
    }),
  );
  // Named in QEMU_MIGTEST_BINARIES and found on no target: that is an error, not a gap.
  const named = Boolean(req.env.QEMU_MIGTEST_BINARIES?.trim());
  if (named && slots.every((s) => s.unavailable !== undefined)) {
    for (const s of slots) s.required = true;
  }
  return slots;
}

/** A path or command: one slot, on the target it reports, unless QEMU_MIGTEST_ARCHES excludes it. */
async function pathSlot(req: Request, spec: string, specIndex: number): Promise<Slot> {
  const resolved = await resolveQemuBinary(spec, req.env);
  if (req.explicit && !req.arches.includes(resolved.arch)) {
    const archesText = `QEMU_MIGTEST_ARCHES=${req.env.QEMU_MIGTEST_ARCHES ?? ""}`;
    return {
      spec,
      specIndex,
      arch: resolved.arch,
      required: false,
      unavailable: `${resolved.path} emulates ${resolved.arch}, which ${archesText} leaves out`,
    };
  }
  return { spec, specIndex, arch: resolved.arch, required: true, resolved };
}

/** The slot's binary with its accelerator, or why the forced accelerator cannot cover it. */
async function underTest(
  req: Request,
  s: Slot & { resolved: ResolvedQemu },
  kvm: ReturnType<typeof detectKvm>,
  host: ReturnType<typeof hostQemuArch>,
): Promise<BinaryUnderTest | UnavailableBinary> {
  const mismatch = kvmArchMismatch(s.arch, host);
  if (req.accelRequest === "kvm" && mismatch && !s.required) {
    return {
      spec: s.spec,
      arch: s.arch,
      reason: `QEMU_MIGTEST_ACCEL=kvm, but ${mismatch}; QEMU_MIGTEST_ACCEL=tcg (or auto) covers it`,
    };
  }
  const info = await probeQemuBinary(s.resolved.path);
  let choice: ReturnType<typeof chooseAccel>;
  try {
    choice = chooseAccel(req.accelRequest, kvm, info.accels, info.arch, host);
  } catch (e) {
    if (e instanceof AccelError) throw new AccelError(`QEMU ${s.spec} (${s.arch}): ${e.message}`);
    throw e;
  }
  return {
    spec: s.spec,
    path: info.path,
    version: info.version,
    arch: info.arch,
    label: shortVersion(info),
    accelRequest: req.accelRequest,
    accel: choice.accel,
    accelReason: choice.reason,
  };
}

/**
 * The run's binaries (one per spec x target) and what it does not cover. Errors
 * (QemuResolveError, AccelError) where the user named something that cannot run: a target in
 * QEMU_MIGTEST_ARCHES a matrix name is not installed for, a path or command that does not
 * resolve, a matrix name QEMU_MIGTEST_BINARIES names that is installed on no selected target,
 * kvm forced for a target KVM cannot run that QEMU_MIGTEST_ARCHES (or a path) named.
 */
export async function selectBinaries(
  env: NodeJS.ProcessEnv = process.env,
): Promise<BinarySelection> {
  const installed = await installedMatrix(env, QEMU_ARCHES);
  const specs = await binariesFromEnv(env, installed);
  const { arches, explicit } = await selectedArches(env, installed);
  const req: Request = {
    env,
    installed,
    arches,
    explicit,
    accelRequest: accelRequestFromEnv(env),
  };

  const perSpec = await Promise.all(
    specs.map(async (spec, i) =>
      isMatrixName(spec) ? matrixSlots(req, spec, i) : [await pathSlot(req, spec, i)],
    ),
  );
  const archOrder = (a: QemuArch) => QEMU_ARCHES.indexOf(a);
  const slots = perSpec
    .flat()
    .sort((a, b) => archOrder(a.arch) - archOrder(b.arch) || a.specIndex - b.specIndex);
  const errors = slots.filter((s) => s.unavailable !== undefined && s.required);
  if (errors.length > 0) {
    throw new QemuResolveError(errors.map((s) => s.unavailable).join("\n"), specs.join(","));
  }

  const kvm = detectKvm();
  const host = hostQemuArch();
  const binaries: BinaryUnderTest[] = [];
  const unavailable: UnavailableBinary[] = [];
  for (const s of slots) {
    const { resolved } = s;
    const got = resolved
      ? await underTest(req, { ...s, resolved }, kvm, host)
      : { spec: s.spec, arch: s.arch, reason: s.unavailable ?? "not resolved" };
    if ("reason" in got) unavailable.push(got);
    else binaries.push(got);
  }
  return { binaries, unavailable, arches, archesExplicit: explicit };
}

/** The binaries of selectBinaries, for callers that do not report what is left out. */
export async function selectBinariesUnderTest(
  env: NodeJS.ProcessEnv = process.env,
): Promise<BinaryUnderTest[]> {
  return (await selectBinaries(env)).binaries;
}

/** "not covered: 11.1 on aarch64: <reason>", one line each; "" when everything is covered. */
export function formatUnavailable(unavailable: readonly UnavailableBinary[]): string {
  return unavailable.map((u) => `not covered: ${u.spec} on ${u.arch}: ${u.reason}`).join("\n");
}
