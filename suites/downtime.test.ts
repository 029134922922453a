// Guest-visible downtime: the longest stretch the guest could not run across the switchover,
// from its own progress word read in place on both sides (harness/guest/downtime.ts), next to
// QEMU's `downtime`. The guest's TSC does not run while the VM is stopped (measured under TCG:
// it advances 6-9 ms across a 26-76 ms stretch), so the stretch is timed by the host reading
// the guest's progress; the guest's own clock across it is reported beside.

import { expect } from "vitest";
import { sampleSwitchover } from "../harness/guest/downtime.ts";
import { timeoutMs } from "../harness/util/timeouts.ts";
import { expectCompletedMigration } from "./expect-migration.ts";
import { forEachQemu, test, where } from "./migration-test.ts";

const MEMORY_MIB = 128;
/** QEMU's downtime clock starts before the vCPU is paused; a loaded host delays the pause. */
const VCPU_PAUSE_SLACK_MS = 15;

forEachQemu("guest-visible downtime", (b) => {
  test(`the guest's longest stop across the switchover, next to QEMU's downtime ${where(b)}`, {
    tags: ["full"],
  }, async ({ launchPair }) => {
    const pair = await launchPair({
      binary: b.path,
      accel: b.accelRequest,
      memoryMiB: MEMORY_MIB,
      source: { ramBackingFile: true },
      // A first pass of about a second, then a switchover of a few MiB.
      parameters: { "max-bandwidth": 128 * 1024 * 1024, "downtime-limit": 300 },
    });
    await pair.waitForGuest();
    const started = Date.now();
    const uri = await pair.startIncoming();
    const sampler = sampleSwitchover(pair.source, pair.destination, timeoutMs("migration"));
    await pair.startMigration(uri);
    await pair.waitForStatuses(
      { source: ["completed"], destination: ["completed"] },
      { timeoutMs: timeoutMs("migration") },
    );
    await pair.waitForVm("destination", (s) => s.running, "running");
    const seen = await sampler.result;
    const result = await pair.finishCompleted(uri, started, true);
    expectCompletedMigration(pair, result, MEMORY_MIB);
    expect(seen, "a switchover was seen in the guest's progress word").toBeDefined();
    if (!seen) return;
    const downtime = result.source.migration.downtime ?? 0;
    const line = `guest-visible downtime ${seen.stretchMs.toFixed(1)} ms (+-${seen.resolutionMs.toFixed(1)}), QEMU downtime ${downtime} ms, guest TSC advanced ${seen.guestClockMs.toFixed(2)} ms across it, ${seen.reads} reads`;
    pair.timeline.record("harness", "note", line);
    console.log(`${where(b)} ${line}`);
    // The guest cannot run from the source's stop until the destination starts it: about
    // QEMU's downtime, which the source clocks from just before vm_stop (migration_completion)
    // to the end of sending. Pausing the vCPU takes its thread's next turn on the host: seen
    // 3 ms of QEMU's figure before the guest stopped (7.2 aarch64, loaded host).
    expect(seen.stretchMs + seen.resolutionMs, line).toBeGreaterThanOrEqual(
      downtime - VCPU_PAUSE_SLACK_MS,
    );
    // ...and not much more: the destination resumes once it has loaded the last state (measured
    // here 7-20 ms over QEMU's figure under TCG; the margin covers a loaded 2-core host).
    expect(seen.stretchMs - seen.resolutionMs, line).toBeLessThanOrEqual(downtime + 150);
  });
});
