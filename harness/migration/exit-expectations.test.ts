import { describe, expect, test } from "vitest";
import { exitProblems } from "./exit-expectations.ts";

describe("exitProblems", () => {
  test("a QEMU quit by the harness that exits 0 is fine", () => {
    expect(exitProblems("source", undefined, { exitCode: 0 }, undefined, "")).toEqual([]);
  });

  test("an undeclared crash is named with its signal and stderr", () => {
    expect(
      exitProblems(
        "destination",
        { signal: "SIGSEGV" },
        { signal: "SIGSEGV" },
        undefined,
        "boom\n",
      ),
    ).toEqual([
      "the destination QEMU exited on its own during the test (killed by SIGSEGV), which the test did not declare; its stderr ended with:\nboom",
    ]);
  });

  test("a declared exit must happen, with the declared code", () => {
    expect(
      exitProblems("destination", { exitCode: 1 }, { exitCode: 1 }, { exitCode: 1 }, ""),
    ).toEqual([]);
    expect(exitProblems("destination", undefined, { exitCode: 0 }, { exitCode: 1 }, "")).toEqual([
      "the destination QEMU was expected to exit by itself (exit code 1) but was still running at teardown",
    ]);
    expect(
      exitProblems("destination", { exitCode: 0 }, { exitCode: 0 }, { exitCode: 1 }, ""),
    ).toEqual(["the destination QEMU exited with exit code 0, expected exit code 1"]);
  });

  test("a QEMU that ignores quit, or exits non-zero after it, is a problem", () => {
    expect(exitProblems("source", undefined, { signal: "SIGKILL" }, undefined, "")).toEqual([
      'the source QEMU did not exit on "quit" and was killed with SIGKILL',
    ]);
    expect(exitProblems("source", undefined, { exitCode: 1 }, undefined, "")).toEqual([
      'the source QEMU exited with exit code 1 after "quit"',
    ]);
  });

  test("a QEMU declared to hang on quit must still be running at teardown and need the kill", () => {
    const hangs = { hangsOnQuit: true } as const;
    expect(exitProblems("destination", undefined, { signal: "SIGKILL" }, hangs, "")).toEqual([]);
    expect(exitProblems("destination", undefined, { exitCode: 0 }, hangs, "")).toEqual([
      'the destination QEMU was expected not to obey "quit" but ended with exit code 0',
    ]);
    expect(exitProblems("destination", { exitCode: 1 }, { exitCode: 1 }, hangs, "")).toEqual([
      'the destination QEMU was expected to hang on "quit" but exited by itself (exit code 1)',
    ]);
  });
});
