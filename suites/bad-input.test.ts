// Bad input gets a clear error: what was wrong and how to fix it. Each case runs the real launch
// path; the "QEMU" is real except where the bad input is the binary itself.

import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { describe, expect, inject } from "vitest";
import { MigrationConfigError, MigrationPair } from "../harness/migration/pair.ts";
import { AccelError, chooseAccel, detectKvm } from "../harness/qemu/accel.ts";
import { QemuBinaryError } from "../harness/qemu/binary.ts";
import { Machine, MachineLaunchError } from "../harness/qemu/machine.ts";
import { isAlive, registered } from "../harness/qemu/process-registry.ts";
import { runScenario } from "../harness/scenario/run.ts";
import { type Scenario, ScenarioError, ScenarioUnsupported } from "../harness/scenario/scenario.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const binaries = inject("binaries");
const noGreeting = fileURLToPath(new URL("./fixtures/qemu-no-greeting.mjs", import.meta.url));

describe("bad QEMU binaries", () => {
  test("a binary that does not exist", async () => {
    await expect(
      Machine.launch({ name: "source", binary: "/nonexistent/qemu-system-x86_64" }),
    ).rejects.toThrow(
      /QEMU binary "\/nonexistent\/qemu-system-x86_64": \/nonexistent\/qemu-system-x86_64 does not exist; pass the path of a qemu-system-x86_64 or a matrix name/,
    );
  });

  test("a command that is not on PATH", async () => {
    await expect(Machine.launch({ name: "source", binary: "qemu-system-nosuch" })).rejects.toThrow(
      /"qemu-system-nosuch" not found on PATH; install qemu-system-x86 \(apt-get install qemu-system-x86\) or pass a path/,
    );
  });

  test("a binary that is not QEMU (/bin/true)", async () => {
    const error = await Machine.launch({ name: "source", binary: "/bin/true" }).catch((e) => e);
    expect(error).toBeInstanceOf(QemuBinaryError);
    expect(error.message).toMatch(
      /\/bin\/true -version printed nothing QEMU-like \(exit code 0, output \(no output\)\); expected "QEMU emulator version X.Y.Z"/,
    );
  });

  test("a QEMU whose monitor never greets is killed and reported", async () => {
    const before = new Set(registered().children.map((c) => c.pid));
    const error = await Machine.launch({
      name: "source",
      binary: noGreeting,
      accel: "tcg",
      startTimeoutMs: 1500,
      parentDir: inject("runDir"),
    }).catch((e) => e);
    expect(error).toBeInstanceOf(MachineLaunchError);
    expect(error.message).toMatch(/no QMP session within 1500 ms/);
    expect(error.message).toMatch(/got no greeting/);
    expect(error.message).toMatch(/the process was killed/);
    // Nothing of it is left registered or alive.
    const after = registered().children.filter((c) => !before.has(c.pid));
    expect(after).toEqual([]);
  });
});

forEachQemu("bad input to QEMU", (b) => {
  test(`QEMU that exits at start reports its exit code and stderr ${where(b)}`, async () => {
    const error = await Machine.launch({
      name: "source",
      binary: b.path,
      accel: b.accelRequest,
      machineType: "no-such-machine",
      parentDir: inject("runDir"),
    }).catch((e) => e);
    expect(error).toBeInstanceOf(MachineLaunchError);
    expect(error.message).toMatch(/source: QEMU \S+ exited during start-up \(exit code 1\)/);
    expect(error.message).toMatch(/command line: .*-machine no-such-machine/);
    expect(error.stderrTail).toMatch(/unsupported machine type/);
    expect(error.exit).toEqual({ exitCode: 1, signal: undefined });
  });

  test(`an unknown capability is refused with the list of known ones ${where(b)}`, async ({
    launchPair,
  }) => {
    const error = await launchPair({
      binary: b.path,
      accel: b.accelRequest,
      capabilities: { "no-such-capability": true },
    }).catch((e) => e);
    expect(error).toBeInstanceOf(MigrationConfigError);
    expect(error.message).toMatch(
      /unknown migration capability "no-such-capability" on the (source|destination) \(QEMU [\d.]+\); it knows: .*xbzrle.*events/,
    );
  });

  test(`an unknown parameter is refused with the list of known ones ${where(b)}`, async ({
    launchPair,
  }) => {
    const error = await launchPair({
      binary: b.path,
      accel: b.accelRequest,
      parameters: { "no-such-parameter": 1 },
    }).catch((e) => e);
    expect(error).toBeInstanceOf(MigrationConfigError);
    expect(error.message).toMatch(
      /unknown migration parameter "no-such-parameter" .*max-bandwidth/,
    );
  });

  test(`a parameter value QEMU rejects names the parameter ${where(b)}`, async ({ launchPair }) => {
    const error = await launchPair({
      binary: b.path,
      accel: b.accelRequest,
      parameters: { "multifd-channels": 0 },
    }).catch((e) => e);
    expect(String(error.message)).toMatch(
      /migrate-set-parameters.*multifd-channels.*failed: GenericError/,
    );
  });

  test(`a scenario naming a capability this QEMU lacks skips with the reason, or fails when required ${where(b)}`, async ({
    launchPair,
  }) => {
    const place = { binary: b.path, accel: b.accelRequest, parentDir: inject("runDir") };
    // A capability some QEMU of 7.2..11.1 has and this one does not.
    const probe = await launchPair({ ...place, guest: { kind: "none" } });
    const known = new Set((await probe.queryCapabilities("source")).map((c) => c.capability));
    const lacking = (["switchover-ack", "block", "compress"] as const).find((c) => !known.has(c));
    if (!lacking) throw new Error(`QEMU ${b.version} has every capability this test can name`);
    const scenario: Scenario = {
      guest: { kind: "none" },
      capabilities: { both: { [lacking]: true } },
    };
    const skipped = await runScenario(scenario, place, launchPair).catch((e) => e);
    expect(skipped).toBeInstanceOf(ScenarioUnsupported);
    expect(skipped.message).toBe(
      `QEMU ${probe.source.binary.version} (source) has no migration capability "${lacking}" (query-migrate-capabilities); QEMU ${probe.source.binary.version} (destination) has no migration capability "${lacking}" (query-migrate-capabilities)`,
    );
    const failed = await runScenario({ ...scenario, required: [lacking] }, place, launchPair).catch(
      (e) => e,
    );
    expect(failed).toBeInstanceOf(ScenarioError);
    expect(failed.message).toMatch(
      new RegExp(`^required: QEMU \\S+ \\(source\\) has no migration capability "${lacking}"`),
    );
  });

  test(`a QEMU that dies during a test fails it at teardown, unless the test declared it ${where(b)}`, async () => {
    const place = { binary: b.path, accel: b.accelRequest, parentDir: inject("runDir") };
    const crashed = await MigrationPair.launch({ ...place, guest: { kind: "none" } });
    process.kill(crashed.destination.pid, "SIGSEGV");
    await crashed.destination.exited;
    expect(await crashed.close()).toEqual([
      expect.stringMatching(
        /^the destination QEMU exited on its own during the test \(killed by SIGSEGV\), which the test did not declare/,
      ),
    ]);
    const declared = await MigrationPair.launch({ ...place, guest: { kind: "none" } });
    declared.expectExit("destination", { signal: "SIGKILL" });
    process.kill(declared.destination.pid, "SIGKILL");
    await declared.destination.exited;
    expect(await declared.close()).toEqual([]);
  });

  test(`a busy tcp port is reported before QEMU tries it ${where(b)}`, async ({ launchPair }) => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : 0;
    try {
      const pair = await launchPair({ binary: b.path, accel: b.accelRequest, port });
      await expect(pair.startIncoming()).rejects.toThrow(
        new RegExp(
          `tcp port ${port} on 127.0.0.1 is already in use by another process; choose another port`,
        ),
      );
    } finally {
      server.close();
    }
  });
});

describe("KVM asked for but not usable", () => {
  test("forced kvm without /dev/kvm says how to fix it", () => {
    // A fake root without dev/kvm: the decision and its message, as on a host without KVM.
    const kvm = detectKvm("/nonexistent-root");
    expect(() => chooseAccel("kvm", kvm, ["tcg", "kvm"], "x86_64", "x86_64")).toThrow(AccelError);
    expect(() => chooseAccel("kvm", kvm, ["tcg", "kvm"], "x86_64", "x86_64")).toThrow(
      /accelerator kvm was requested but KVM is not usable: \/nonexistent-root\/dev\/kvm does not exist: load the KVM module .*; or use accel tcg/,
    );
  });

  test("forced kvm on this host either launches or fails with the reason", async ({ skip }) => {
    const kvm = detectKvm();
    if (!kvm.usable) {
      const error = await Machine.launch({ name: "source", accel: "kvm" }).catch((e) => e);
      expect(error).toBeInstanceOf(AccelError);
      expect(error.message).toContain(kvm.reason);
      return;
    }
    const binary = binaries.find((x) => x.path);
    if (!binary) return skip("no QEMU binary under test");
    const m = await Machine.launch({
      name: "source",
      binary: binary.path,
      accel: "kvm",
      parentDir: inject("runDir"),
    });
    try {
      expect(m.accel.accel).toBe("kvm");
      expect(m.commandLine).toContain("kvm");
      if (!kvm.hardware) expect(m.accel.reason).toContain(kvm.reason);
    } finally {
      await m.shutdown();
    }
    expect(isAlive(m.pid)).toBe(false);
  });
});
