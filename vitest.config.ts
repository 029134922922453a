import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "harness/**/*.test.ts",
      "suites/**/*.test.ts",
      "scripts/**/*.test.ts",
      "images/**/*.test.ts",
    ],
    // Migrations take seconds; vitest's 5 s default is far too short for an e2e suite.
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Two cores: one migration pair at a time keeps timings honest and the machine responsive.
    fileParallelism: false,
    globalSetup: ["suites/global-setup.ts"],
    // Select with `--tags-filter <name>`; tests must only use tags defined here.
    tags: [
      {
        name: "vfio",
        description:
          "Migration with a passed-through VFIO device; needs a VFIO host (README: VFIO runner), skipped with the probe's reason otherwise",
        timeout: 300_000,
      },
      {
        name: "kvm",
        description:
          "Needs hardware KVM (kvm_intel / kvm_amd); skipped with a reason on TCG-only hosts",
        timeout: 180_000,
      },
      {
        name: "full",
        description:
          "Only in the full set (npm run test:full, the nightly job): variants beyond the one-per-family smoke set that npm test runs",
        timeout: 300_000,
      },
      {
        name: "matrix",
        description: "Runs across the QEMU version matrix (scripts/install-qemu-matrix)",
        timeout: 300_000,
      },
    ],
    // With QEMU_MIGTEST_RESULTS set (CI), JUnit goes beside the run artefacts in that folder.
    // verbose: every test with where it ran, and every skip with its reason.
    reporters: process.env.QEMU_MIGTEST_RESULTS ? ["verbose", "junit"] : ["verbose"],
    ...(process.env.QEMU_MIGTEST_RESULTS
      ? { outputFile: { junit: `${process.env.QEMU_MIGTEST_RESULTS}/junit.xml` } }
      : {}),
  },
});
