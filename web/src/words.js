// Plain-word helpers shared by the screens.

export function initials(name) {
  const words = String(name || "?").trim().split(/\s+/).filter(Boolean);
  const first = Array.from(words[0] || "?")[0] || "?";
  const second = words.length > 1 ? Array.from(words[words.length - 1])[0] : "";
  return (first + second).toUpperCase();
}

export function ordinal(n) {
  const s = ["th", "st", "nd", "rd"];
  const v = n % 100;
  return n + (s[(v - 20) % 10] || s[v] || s[0]);
}

export const ROLE_LABEL = {
  facilitator: "Facilitator",
  cofacilitator: "Co-facilitator",
  peer: "",
};

export function isModerator(role) {
  return role === "facilitator" || role === "cofacilitator";
}

export function clock(ts) {
  if (typeof ts !== "number" && typeof ts !== "string") return "";
  let d = new Date(typeof ts === "number" && ts < 1e12 ? ts * 1000 : ts);
  if (isNaN(d.getTime())) return "";
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// Friendly words for the server's refusal and error codes.
export const REFUSAL = {
  bad_token: "This link does not work. Ask your facilitator for a new one.",
  name_taken: "Someone here already uses that name. Please pick another one.",
  room_locked: "The room is locked right now. Ask your facilitator to open it.",
  room_full: "The room is full right now. Please try again later.",
  banned: "You cannot rejoin this session.",
  resume_expired: "Your earlier place in this group has ended, and the group is meeting now. Join again?",
  session_ended: "The session you were in has ended. Thank you for being here. When your group meets again, you can join from here.",
};
