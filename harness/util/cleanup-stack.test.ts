import { describe, expect, test } from "vitest";
import { CleanupStack } from "./cleanup-stack.ts";

describe("CleanupStack", () => {
  test("a failing step unwinds what came before it, newest first, and rethrows", async () => {
    const undone: string[] = [];
    const stack = new CleanupStack();
    const error = await stack
      .guard(async () => {
        stack.defer(() => undone.push("a"));
        stack.defer(async () => {
          undone.push("b");
          throw new Error("undo b failed");
        });
        stack.defer(() => undone.push("c"));
        throw new Error("step d failed");
      })
      .catch((e: Error) => e);
    expect(error.message).toBe("step d failed");
    expect(undone).toEqual(["c", "b", "a"]);
  });

  test("success keeps the steps for a later unwind", async () => {
    const undone: string[] = [];
    const stack = new CleanupStack();
    await stack.guard(async () => stack.defer(() => undone.push("a")));
    expect(undone).toEqual([]);
    await stack.unwind();
    await stack.unwind();
    expect(undone).toEqual(["a"]);
  });
});
