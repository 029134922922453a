import { expect, test } from "vitest";
import { PromiseCache } from "./promise-cache.ts";

test("one promise per key, shared; a rejected one is made again", async () => {
  const cache = new PromiseCache<string, number>();
  let made = 0;
  const ok = () => Promise.resolve(++made);
  expect(await Promise.all([cache.get("a", ok), cache.get("a", ok)])).toEqual([1, 1]);
  expect(await cache.get("b", ok)).toBe(2);
  await expect(cache.get("c", () => Promise.reject(new Error("no")))).rejects.toThrow("no");
  expect(await cache.get("c", ok)).toBe(3);
  expect(await cache.get("a", ok)).toBe(1);
});
