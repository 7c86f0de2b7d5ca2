import { test } from "node:test";
import assert from "node:assert/strict";
import { gate, APPLY, DUPLICATE, GAP } from "./seq.js";

test("next seq applies and advances", () => {
  assert.deepEqual(gate(4, "hands", { seq: 5 }), { verdict: APPLY, last: 5 });
});
test("old or equal seq is a duplicate", () => {
  assert.equal(gate(4, "hands", { seq: 4 }).verdict, DUPLICATE);
  assert.equal(gate(4, "participant.joined", { seq: 2 }).verdict, DUPLICATE);
});
test("a skipped seq is a gap and does not advance", () => {
  assert.deepEqual(gate(4, "chat", { seq: 6, message: {} }), { verdict: GAP, last: 4 });
});
test("moderator-only chat never gaps, never duplicates, never advances", () => {
  const m = { message: { to: "moderators" } };
  assert.deepEqual(gate(4, "chat", { ...m, seq: 4 }), { verdict: APPLY, last: 4 });
  assert.deepEqual(gate(4, "chat", { ...m, seq: 9 }), { verdict: APPLY, last: 4 });
  assert.deepEqual(gate(4, "chat", { ...m, seq: 1 }), { verdict: APPLY, last: 4 });
});
test("a group chat line is gated like any broadcast", () => {
  assert.equal(gate(4, "chat", { seq: 4, message: {} }).verdict, DUPLICATE);
});
test("events without seq always apply", () => {
  assert.deepEqual(gate(4, "waiting.updated", { waiting: [] }), { verdict: APPLY, last: 4 });
  assert.deepEqual(gate(4, "you.muted", undefined), { verdict: APPLY, last: 4 });
});
