// Which QEMU binaries and accelerator the suites run on, decided once per run.
// QEMU_MIGTEST_BINARIES: comma-separated matrix names ("7.2,11.1"), paths or command names
// (default: every installed matrix version, else qemu-system-x86_64 on PATH).
// QEMU_MIGTEST_ACCEL: auto (default), kvm or tcg.

import { type AccelRequest, chooseAccel, detectKvm } from "./accel.ts";
import { probeQemuBinary, shortVersion } from "./binary.ts";
import { binariesFromEnv } from "./matrix.ts";

export interface BinaryUnderTest {
  /** What the user named: a path or a command. */
  spec: string;
  path: string;
  version: string;
  /** Short label for test names: "7.2", "11.1". */
  label: string;
  accelRequest: AccelRequest;
  accel: "kvm" | "tcg";
  accelReason: string;
}

function accelRequestFromEnv(env: NodeJS.ProcessEnv = process.env): AccelRequest {
  const a = env.QEMU_MIGTEST_ACCEL ?? "auto";
  if (a !== "auto" && a !== "kvm" && a !== "tcg") {
    throw new Error(`QEMU_MIGTEST_ACCEL must be auto, kvm or tcg, not "${a}"`);
  }
  return a;
}

export async function selectBinariesUnderTest(
  env: NodeJS.ProcessEnv = process.env,
): Promise<BinaryUnderTest[]> {
  const specs = await binariesFromEnv(env);
  const accelRequest = accelRequestFromEnv(env);
  const kvm = detectKvm();
  return Promise.all(
    specs.map(async (spec) => {
      const info = await probeQemuBinary(spec);
      const choice = chooseAccel(accelRequest, kvm, info.accels);
      return {
        spec,
        path: info.path,
        version: info.version,
        label: shortVersion(info),
        accelRequest,
        accel: choice.accel,
        accelReason: choice.reason,
      };
    }),
  );
}
