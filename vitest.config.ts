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
    globalSetup: ["harness/vitest-global-setup.ts"],
    reporters: ["default"],
  },
});
