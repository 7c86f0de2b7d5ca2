// The broadcast sequence gate (protocol.md, "Server to clients").
//
// Every room broadcast carries `seq`, growing by exactly 1 per session.
//   seq === last + 1  -> apply, and it becomes the new last
//   seq <= last       -> a duplicate (a re-delivery after reconnect): ignore
//   seq >  last + 1   -> a gap: we missed something; reconnect with `resume`
//                        and take the new snapshot
// Exception: moderator-only chat lines (`message.to === "moderators"`) carry
// the current seq without consuming one, so they are never a gap and never a
// duplicate: always apply, and leave `last` alone.
// Events without a seq (waiting.updated, you.*, session.ended) are personal:
// always apply.

export const APPLY = "apply";
export const DUPLICATE = "duplicate";
export const GAP = "gap";

/** @returns {{verdict: string, last: number}} */
export function gate(last, event, payload) {
  if (!payload || typeof payload.seq !== "number") return { verdict: APPLY, last };
  if (event === "chat" && payload.message && payload.message.to === "moderators") {
    return { verdict: APPLY, last };
  }
  if (payload.seq <= last) return { verdict: DUPLICATE, last };
  if (payload.seq > last + 1) return { verdict: GAP, last };
  return { verdict: APPLY, last: payload.seq };
}
