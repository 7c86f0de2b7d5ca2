import { test } from "node:test";
import assert from "node:assert/strict";
import { summaryKeys } from "./dom.js";

test("a control's menu summary is found, nearest first", () => {
  assert.deepEqual(summaryKeys("act-p1-remove-yes"), ["act-p1-remove-summary", "act-p1-summary", "act-summary"]);
});
test("an id ending in a dash (token_urlsafe makes them) still ends the walk", () => {
  // Before, the walk stopped making progress at "act-Xy3-" and looped for ever: the
  // page hung when focus fell back after removing such a person.
  assert.deepEqual(summaryKeys("act-Xy3--remove-yes"), [
    "act-Xy3--remove-summary",
    "act-Xy3--summary",
    "act-Xy3-summary",
    "act-summary",
  ]);
  assert.deepEqual(summaryKeys("a--"), ["a--summary", "a-summary"]);
  assert.deepEqual(summaryKeys("plain"), []);
});
