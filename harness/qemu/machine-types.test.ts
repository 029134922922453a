import { describe, expect, test } from "vitest";
import { newestCommon } from "./machine-types.ts";

describe("newestCommon", () => {
  test("the newest version both offer, compared numerically", () => {
    expect(
      newestCommon([
        ["pc-i440fx-7.2", "pc-i440fx-7.10", "pc-i440fx-10.0"],
        ["pc-i440fx-7.2", "pc-i440fx-7.10"],
      ]),
    ).toBe("pc-i440fx-7.10");
  });
  test("nothing in common", () => {
    expect(newestCommon([["pc-q35-7.2"], ["pc-q35-11.1"]])).toBeUndefined();
  });
});
