// peerroom browser client: join, presence, hands, chat, facilitation.
// Wire contract: shared/spec/protocol.md. One socket per page; all room state
// comes from the server (welcome snapshot + seq-gated broadcasts).

import { io } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";
import { gate, DUPLICATE, GAP } from "./seq.js";
import { h, icon, swap, fill } from "./dom.js";
import { initials, ordinal, ROLE_LABEL, isModerator, clock, REFUSAL } from "./words.js";

const NAME_KEY = "peerroom.name"; // localStorage: the pseudonym, this device only
const RESUME_KEY = "peerroom.resume."; // sessionStorage + token: survive a tab reload
const DEVICE_KEY = "peerroom.device"; // localStorage: a random id, so a ban holds across names
const ACK_TIMEOUT_MS = 10000; // slow shared connections: give acks time
// Old phones: keep the chat list short. And no longer than the lines the server lets a
// moderator remove (rooms/peer.py RECENT_MESSAGES_KEPT): a line shown with a Remove
// button the server would refuse ("not in this session any more") misleads.
const MAX_CHAT_LINES = 200;
const CHECKIN_POLL_MS = 60000; // a call-back request must not sit unseen for long
const ASKED_MS = 30000; // one invitation to unmute at a time: asking again and again is pressure
const LEAVE_WAIT_MS = 2500; // "Leave now" is told to the server, not waited on for long
const NAME_MAX = 40;

const BROADCASTS = [
  "participant.joined",
  "participant.updated",
  "participant.left",
  "hands",
  "chat",
  "chat.removed",
  "settings",
  "consent",
];

const app = document.getElementById("app");
const announcer = document.getElementById("announcer");

const S = {
  token: tokenFromPath(location.pathname),
  wire: new URLSearchParams(location.search).get("wire") === "msgpack" ? "msgpack" : "json",
  name: "",
  startMic: false,
  startCam: false,
  socket: null,
  phase: "",
  me: null, // {id, name, role}
  resume: null,
  place: null, // {id, session}: who the resume token takes back, and in which session
  resumeSent: false, // the latest connect asked for a place back (auth.resume_only)
  room: null, // snapshot minus participants
  people: new Map(), // id -> Participant
  last: 0,
  resyncing: false,
  online: false,
  welcomed: false,
  messages: [],
  notice: null, // {text, kind}
  unmutePrompt: false,
  confirmEnd: false,
  confirmRemove: null, // {id, ban}: "Remove" pressed for this person, asking to be sure
  confirmKeepOut: null, // id of someone waiting: "Keep out" pressed, asking to be sure
  asked: new Map(), // participant id -> timer: asked to unmute a moment ago
  confirmLeave: false,
  leaving: false, // "Leave now" pressed: on the way out
  waitRetries: 0, // a dropped waiting place is freed a moment after we reconnect
  waitPosition: null, // place in the waiting line on arrival (`waiting {position}`)
  checkins: { state: "idle", items: [], message: "" },
  checkinTimer: null,
  checkinAsked: 0, // check-in list loads started...
  checkinShown: 0, // ...and the latest of them whose answer is on screen
  chatError: "",
  everConsented: false, // offer "delete my kept messages" once consent was on
  replaced: false, // the server said this connection was taken over by another
  chatLogModerator: null, // whether the chat log was last drawn for a moderator
  retries: 0, // refusals in a row that are worth retrying (unavailable, rate_limited)
};

// ---------------------------------------------------------------- helpers

function tokenFromPath(path) {
  const m = /^\/r\/([^/?#]+)\/?$/.exec(path);
  return m ? decodeOr(m[1], null) : null;
}

/** decodeURIComponent, or ``fallback`` for a malformed escape (a link cut mid-"%"):
 * a throw at start-up would leave the page on "Loading…" for good. */
function decodeOr(text, fallback) {
  try {
    return decodeURIComponent(text);
  } catch (e) {
    return fallback;
  }
}

function storage(kind) {
  try {
    return kind === "local" ? window.localStorage : window.sessionStorage;
  } catch (e) {
    return null; // private mode on some old browsers
  }
}

function saveResume() {
  const s = storage("session");
  if (!s || !S.token) return;
  if (S.resume) {
    const place = S.place || {};
    s.setItem(RESUME_KEY + S.token, JSON.stringify({ resume: S.resume, name: S.name, id: place.id, session: place.session }));
  } else s.removeItem(RESUME_KEY + S.token);
}

function loadResume() {
  const s = storage("session");
  if (!s || !S.token) return null;
  try {
    return JSON.parse(s.getItem(RESUME_KEY + S.token) || "null");
  } catch (e) {
    return null;
  }
}

/** A random id for this browser (not derived from anything about the person). */
function deviceId() {
  const ls = storage("local");
  if (!ls) return null;
  let id = ls.getItem(DEVICE_KEY);
  if (!id && window.crypto && crypto.getRandomValues) {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    ls.setItem(DEVICE_KEY, id);
  }
  return id;
}

let pending = [];
let flushTimer = null;
/** Say something to screen readers (polite; batched so nothing is cut off). */
function announce(text) {
  pending.push(text);
  clearTimeout(flushTimer);
  flushTimer = setTimeout(() => {
    announcer.textContent = "";
    const said = pending.join(" ");
    pending = [];
    setTimeout(() => (announcer.textContent = said), 60);
  }, 120);
}

function nameOf(id) {
  const p = S.people.get(id);
  if (!p) return "Someone";
  return id === S.me.id ? "You" : p.name;
}

function mine() {
  return (S.me && S.people.get(S.me.id)) || null;
}

function amModerator() {
  return !!S.me && isModerator(S.me.role);
}

const PRESENT = ["connecting", "waiting", "room"]; // phases in which an answer still matters

/** Emit with an ack; resolves to the ack, or ``{ok: false, error}`` if none came. An
 * answer that comes after the page moved on (the session ended, we left, another window
 * took over) is ``{ok: false, stale: true}``: say nothing about it. */
function send(event, payload) {
  return new Promise((resolve) => {
    const socket = S.socket;
    if (!socket || !socket.connected) {
      resolve({ ok: false, error: { code: "offline", message: "You are offline. Try again in a moment." } });
      return;
    }
    socket.timeout(ACK_TIMEOUT_MS).emit(event, payload || {}, (err, ack) => {
      if (S.socket !== socket || PRESENT.indexOf(S.phase) === -1) {
        // socket.io fails a pending ack when its socket closes, and the server sends
        // session.ended before the ack of mod.end: no "No answer" after the end.
        resolve({ ok: false, stale: true, error: { code: "gone", message: "" } });
      } else if (err) {
        // It may well have reached the server: "try again" could send a line twice.
        const message = socket.connected
          ? "No answer from the server yet; check whether it went through."
          : "Connection dropped; check whether it went through.";
        resolve({ ok: false, error: { code: socket.connected ? "timeout" : "dropped", message } });
      } else resolve(ack || { ok: false, error: { code: "bad_reply", message: "Unexpected answer." } });
    });
  });
}

/** A moderator or personal action: report failures in plain words. */
async function act(event, payload) {
  const ack = await send(event, payload);
  if (ack.stale) return ack;
  if (!ack.ok) {
    const msg = (ack.error && ack.error.message) || "That did not work.";
    setNotice(msg, "error");
  } else if (typeof ack.note === "string" && ack.note) {
    setNotice(ack.note, "info"); // done, with something to know (a ban that cannot hold)
  }
  return ack;
}

function setNotice(text, kind) {
  S.notice = text ? { text, kind: kind || "info" } : null;
  if (text) announce(text);
  renderNotice();
}

function screen(title, ...content) {
  S.confirmEnd = false;
  const heading = h("h1", { tabindex: "-1" }, title);
  const main = h("main", { class: "screen" }, heading, ...content);
  fill(app, main);
  heading.focus();
  document.title = title + " · peerroom";
  return main;
}

function crisisNote() {
  return h(
    "p",
    { class: "crisis" },
    h("strong", null, "peerroom is not a crisis service."),
    " If you are in danger or need urgent help, call your local emergency number now.",
  );
}

// ---------------------------------------------------------------- screens

function showNoToken() {
  S.phase = "notoken";
  const input = h("input", {
    id: "link",
    name: "link",
    type: "text",
    autocomplete: "off",
    autocapitalize: "off",
    spellcheck: "false",
  });
  const err = h("p", { class: "field-error", id: "link-error", role: "alert" });
  const form = h(
    "form",
    {
      class: "card",
      onsubmit: (e) => {
        e.preventDefault();
        const v = input.value.trim();
        const m = /\/r\/([^/?#\s]+)/.exec(v);
        const raw = m ? m[1] : /^[A-Za-z0-9_\-.~]+$/.test(v) ? v : "";
        const token = raw ? decodeOr(raw, "") : "";
        if (!token) {
          err.textContent = "That does not look like a group link. Paste the whole link.";
          input.setAttribute("aria-invalid", "true");
          input.setAttribute("aria-describedby", "link-error");
          input.focus();
          return;
        }
        location.assign("/r/" + encodeURIComponent(token));
      },
    },
    h("label", { for: "link" }, "Your group link"),
    input,
    err,
    h("button", { type: "submit", class: "primary" }, "Open my group"),
  );
  screen(
    "Welcome to peerroom",
    h("p", { class: "lead" }, "To join a group you need its link. Ask your facilitator for your link, then open it on this device."),
    h("p", null, "If you already have it, you can paste it here."),
    form,
    crisisNote(),
  );
}

/** The join screen. ``error`` is about the name typed; ``note`` is something to know
 * first (a place that has ended), said plainly above the form. */
function showJoin(error, note) {
  S.phase = "join";
  const saved = (storage("local") && storage("local").getItem(NAME_KEY)) || "";
  const nameInput = h("input", {
    id: "name",
    name: "name",
    type: "text",
    maxlength: String(2 * NAME_MAX), // UTF-16 units: room for 40 emoji; checked on Join
    autocomplete: "nickname",
    required: true,
    value: S.name || saved,
    "aria-describedby": "name-hint" + (error ? " join-error" : ""),
    "aria-invalid": error ? "true" : null,
  });
  const mic = h("input", { id: "start-mic", type: "checkbox", checked: S.startMic });
  const cam = h("input", { id: "start-cam", type: "checkbox", checked: S.startCam });
  const errBox = h("p", { class: "field-error", id: "join-error", role: "alert" }, error || "");
  const form = h(
    "form",
    {
      class: "card",
      novalidate: true,
      onsubmit: (e) => {
        e.preventDefault();
        const name = nameInput.value.trim();
        // Characters as the server counts them (code points): an emoji is one, not two.
        if (!name || [...name].length > NAME_MAX || /[\u0000-\u001f\u007f]/.test(name)) {
          errBox.textContent = "Please type a name of 1 to 40 characters. Any name you like.";
          nameInput.setAttribute("aria-invalid", "true");
          nameInput.focus();
          return;
        }
        S.name = name;
        S.startMic = mic.checked;
        S.startCam = cam.checked;
        const ls = storage("local");
        if (ls) ls.setItem(NAME_KEY, name);
        connect();
      },
    },
    h("label", { for: "name" }, "Your name in the group"),
    h("p", { class: "hint", id: "name-hint" }, "Any name you like: a nickname is fine. It is remembered on this device only."),
    nameInput,
    errBox,
    h(
      "fieldset",
      { class: "starts" },
      h("legend", null, "Camera and microphone"),
      h("p", { class: "hint" }, "Both start off. You can stay like that the whole time, and still be part of the group."),
      h("div", { class: "check" }, mic, h("label", { for: "start-mic" }, "Start with my microphone on")),
      h("div", { class: "check" }, cam, h("label", { for: "start-cam" }, "Start with my camera on")),
    ),
    h("button", { type: "submit", class: "primary big" }, "Join the group"),
  );
  screen(
    "Join your group",
    note ? h("p", { class: "lead", id: "join-note" }, note) : null,
    form,
    h(
      "section",
      { class: "kept", "aria-labelledby": "kept-h" },
      h("h2", { id: "kept-h" }, "What is kept"),
      h(
        "p",
        null,
        "No audio or video is recorded. Chat messages are stored only for people who choose to keep them, and everyone in the room sees who that is. Private notes to facilitators are never stored.",
      ),
    ),
    h("p", { class: "hint" }, "No computer or data? You can also join by phone: ask your facilitator for the number and PIN."),
    crisisNote(),
  );
  if (error) nameInput.focus();
  if (note) announce(note);
}

function showConnecting(text) {
  const lead = text || "Connecting you to your group. This can take a moment on a slow connection.";
  const shown = S.phase === "connecting" && document.getElementById("connecting-lead");
  S.phase = "connecting";
  if (shown) {
    // Already on this screen (a retry): say it in place, so focus stays where it is and a
    // screen reader is not sent back to the heading every few seconds.
    if (shown.textContent !== lead) shown.textContent = lead;
    return;
  }
  screen(
    "Joining…",
    h("p", { class: "lead", id: "connecting-lead", role: "status" }, lead),
    h("button", { type: "button", class: "link", id: "connecting-back", onclick: stopJoining }, "Back"),
  );
}

/** "Back" while joining: stop trying, and go back to the join screen, name kept. */
function stopJoining() {
  const s = S.socket;
  S.socket = null;
  if (s) {
    s.removeAllListeners();
    s.close();
  }
  S.retries = 0;
  showJoin();
}

function showWaiting() {
  S.phase = "waiting";
  screen(
    "You are in the waiting room",
    h("p", { class: "lead" }, "A facilitator will let you in soon. You can leave this page open and take your time."),
    h("p", { id: "wait-position" }, waitingLine(S.waitPosition)),
    h("p", null, "Your camera and microphone are off."),
    h("p", { id: "wait-status", class: "status offline", role: "status" }),
    h("button", { type: "button", class: "secondary", id: "wait-leave", onclick: leave }, "Leave"),
    crisisNote(),
  );
}

/** Where the person stands in the waiting line. The server says it on arrival only
 * (`waiting {position}`) and facilitators may let people in in any order, so a place
 * further back is said as of arrival: it can only have got nearer since. */
function waitingLine(position) {
  if (typeof position !== "number" || position < 1) return "";
  if (position === 1) return "You are first in line to be let in.";
  return `When you arrived, you were ${ordinal(position)} in line to be let in.`;
}

function showEnd(kind, extra) {
  S.phase = kind;
  stopCheckinPoll();
  const texts = {
    ended: ["The session has ended", "Thank you for being here today."],
    removed: ["You have left the room", "A facilitator removed you from this session. If you think this was a mistake, you can contact your facilitator later."],
    denied: ["You could not join this time", "The facilitator could not let you in right now. You can contact your facilitator to ask about the next session."],
    left: ["You left the room", "Thank you for being here."],
    refused: ["You cannot join right now", extra || ""],
  };
  const [title, body] = texts[kind] || texts.ended;
  const again =
    kind === "left" || kind === "ended"
      ? h("button", { type: "button", class: "primary", onclick: () => showJoin() }, "Join again")
      : null;
  screen(title, h("p", { class: "lead" }, body), again, crisisNote());
}

function showElsewhere() {
  S.phase = "elsewhere";
  stopCheckinPoll();
  const s = S.socket;
  if (s) s.disconnect();
  screen(
    "This room is open somewhere else",
    h("p", { class: "lead" }, "You are in the room from another window or device, so this one stepped aside."),
    h(
      "button",
      {
        type: "button",
        class: "primary",
        onclick: () => {
          if (S.socket) S.socket.connect();
          showConnecting();
        },
      },
      "Use this window instead",
    ),
    crisisNote(),
  );
}

// ---------------------------------------------------------------- socket

function connect() {
  if (S.socket) {
    S.socket.removeAllListeners();
    S.socket.io.removeAllListeners && S.socket.io.removeAllListeners();
    S.socket.close();
  }
  if (!S.resume) forgetRoom(); // a new person (or a new session) on this tab
  S.welcomed = false;
  S.resyncing = false;
  S.replaced = false;
  showConnecting();
  const opts = {
    path: "/socket.io",
    autoConnect: false,
    reconnectionDelay: 1000,
    reconnectionDelayMax: 5000,
    // Straight onto a websocket (the server's lean path: no polling requests, no upgrade
    // dance), and long-polling only if that fails, e.g. behind a proxy that blocks it.
    transports: ["websocket", "polling"],
    tryAllTransports: true,
    // Evaluated on every (re)connect, so a resume token always rides along.
    auth: (cb) => {
      const a = { token: S.token, name: S.name };
      if (S.resume) {
        // Our place back, or nothing: never walk the person into the group as someone
        // new without their pressing Join (a phone asleep past the grace, a session
        // ended meanwhile). The server refuses "resume_expired" then.
        a.resume = S.resume;
        a.resume_only = true;
      } else if (S.phase === "waiting") {
        // Back in the waiting room after a drop: the session it waits for, or nothing.
        // If it ended meanwhile, a plain join would start a new one, alone, waiting
        // for a facilitator who is not there. The server refuses "resume_expired".
        a.live_only = true;
      }
      S.resumeSent = !!S.resume;
      const device = deviceId();
      if (device) a.device = device;
      cb(a);
    },
  };
  if (S.wire === "msgpack") opts.parser = msgpackParser;
  const socket = io(opts);
  S.socket = socket;

  socket.on("connect", () => {
    S.online = true;
    renderStatus();
  });
  socket.on("disconnect", (reason) => {
    S.online = false;
    const waitStatus = document.getElementById("wait-status");
    if (waitStatus) waitStatus.textContent = "Connection lost. Reconnecting… you will be back in the waiting room.";
    if (reason === "io server disconnect" && !S.resyncing) {
      if (S.replaced && S.phase === "room") {
        // The same person came back on another connection (a second tab or device)
        // and took over. Do not take it back on our own, or two tabs would fight.
        showElsewhere();
        return;
      }
      // Closed by the server for no reason given to us: it is restarting, or lost its
      // live state for a moment. Come back (with resume, keeping the place) a little
      // later, spread out so a whole room does not return in the same instant.
      const again = socket;
      setTimeout(() => S.socket === again && again.connect(), 1000 + Math.random() * 2000);
    }
    if (S.phase !== "room") return;
    renderStatus();
  });
  socket.on("connect_error", (err) => {
    S.online = false;
    const data = err && err.data;
    if (data && data.code) {
      refused(data);
      return;
    }
    if (S.phase === "connecting") showConnecting("Still trying to reach the server. Please keep this page open.");
    renderStatus();
  });

  socket.on("welcome", onWelcome);
  socket.on("waiting", (p) => {
    S.welcomed = false;
    S.waitRetries = 0;
    S.waitPosition = p && p.position;
    if (p && p.resume) {
      // Our place in line, back after a drop (or a reload) within the grace period.
      S.resume = p.resume;
      S.place = null;
      saveResume();
    }
    if (S.phase !== "waiting") showWaiting();
    const waitStatus = document.getElementById("wait-status");
    if (waitStatus) waitStatus.textContent = "";
    const where = document.getElementById("wait-position");
    if (where) where.textContent = waitingLine(S.waitPosition);
  });
  socket.on("admitted", () => showConnecting("You are in. Opening the room…"));
  socket.on("denied", () => finish("denied"));
  socket.on("session.ended", () => finish("ended"));
  socket.on("you.removed", () => finish("removed"));
  socket.on("you.replaced", () => {
    S.replaced = true;
  });
  // A line of ours that storage could not keep (docs/storage.md): never a silent loss.
  socket.on("transcript.unsaved", (p) => {
    if (!S.room || !p || (p.session_id && p.session_id !== S.room.session_id)) return;
    const m = S.messages.find((x) => x.id === p.message_id);
    if (m) {
      m.unsaved = true;
      const el = document.querySelector(`#chatlog [data-mid="${CSS.escape(String(m.id))}"]`);
      if (el) el.replaceWith(messageItem(m));
    }
    setNotice("Your message reached the group, but it could not be kept in the transcript.", "info");
  });
  socket.on("you.muted", () => setNotice("A facilitator turned your microphone off.", "info"));
  socket.on("you.camera_stopped", () => setNotice("A facilitator turned your camera off.", "info"));
  socket.on("you.asked_to_unmute", () => {
    S.unmutePrompt = true;
    announce("A facilitator invites you to turn your microphone on, only if you are ready.");
    renderNotice();
  });
  socket.on("waiting.updated", (p) => {
    if (!S.room) return;
    const before = (S.room.waiting || []).length;
    S.room.waiting = (p && p.waiting) || [];
    if (amModerator() && S.room.waiting.length > before) announce(`${S.room.waiting.length} waiting to join.`);
    renderMod();
  });
  // A server notice to moderators (no seq): a check-in arrived or was resolved.
  socket.on("checkins.updated", (p) => {
    if (!amModerator() || S.checkins.state === "unavailable") return;
    const c = p && p.checkin;
    if (c && !c.resolved_at && c.status !== "ok") announce(`New phone check-in: ${CHECKIN_STATUS[c.status] || c.status}.`);
    loadCheckins();
  });
  for (const ev of BROADCASTS) socket.on(ev, (p) => onBroadcast(ev, p));
  socket.connect();
}

function refused(data) {
  if (data.code === "unavailable" || data.code === "rate_limited") {
    // The server cannot let anyone in right now (its database or live state is away
    // for a moment): try again, keeping the resume token and so our place and hand.
    S.retries += 1;
    const delay = Math.min(15000, 1000 * 2 ** Math.min(S.retries, 4)) * (0.5 + Math.random());
    const again = S.socket;
    setTimeout(() => S.socket === again && again && again.connect(), delay);
    if (S.phase === "connecting") {
      const why = data.code === "rate_limited" && data.message ? data.message : "The server is busy.";
      showConnecting(`${why} Trying again in a moment…`);
    }
    renderStatus();
    return;
  }
  if (data.code === "name_taken" && S.phase === "waiting" && S.waitRetries < 3) {
    // Our own waiting place may not be cleared yet after a drop: ask again shortly.
    S.waitRetries += 1;
    setTimeout(() => S.socket && S.socket.connect(), 1500);
    return;
  }
  const text = REFUSAL[data.code] || data.message || "The server did not let you in.";
  const s = S.socket;
  S.socket = null;
  if (s) {
    s.removeAllListeners();
    s.close();
  }
  S.resume = null;
  saveResume();
  if (data.code === "resume_expired") {
    // The place is gone (the session ended, or we were away too long). Nothing of it
    // stays on screen; the person decides whether to join again, name filled in.
    forgetRoom();
    stopCheckinPoll();
    // session_live false: nobody is meeting now (joining would start a session alone).
    showJoin(null, data.session_live === false ? REFUSAL.session_ended : text);
  } else if (data.code === "banned" || data.code === "bad_token") {
    forgetRoom(); // nothing of the room stays, on screen or in memory
    stopCheckinPoll();
    showEnd("refused", text);
  }
  else showJoin(text);
}

function finish(kind) {
  S.leaving = false;
  const s = S.socket;
  S.socket = null;
  S.resume = null;
  saveResume();
  forgetRoom();
  if (s) {
    s.removeAllListeners();
    s.close();
  }
  showEnd(kind);
}

/** Nothing of a session stays on the tab once it is over: the next person to join on
 * this device (a shared phone, a library computer) must not see its chat. */
function forgetRoom() {
  S.messages = [];
  S.everConsented = false;
  S.me = null;
  S.place = null;
  S.people = new Map();
  S.room = null;
  S.last = 0;
  S.unmutePrompt = false;
  S.notice = null;
  S.chatLogModerator = null;
  S.confirmRemove = null;
  S.confirmKeepOut = null;
  for (const timer of S.asked.values()) clearTimeout(timer);
  S.asked = new Map();
}

/** Leave now: tell the server, and go at once if it answers, or after LEAVE_WAIT_MS
 * if it does not (a slow line must not hold someone who wants to go). */
async function leave() {
  if (S.leaving) return;
  S.leaving = true;
  announce("Leaving…");
  renderLeave();
  const btn = document.getElementById("wait-leave");
  if (btn) {
    btn.disabled = true;
    btn.textContent = "Leaving…";
  }
  await Promise.race([send("session.leave", {}), new Promise((done) => setTimeout(done, LEAVE_WAIT_MS))]);
  const stillHere = S.leaving && PRESENT.indexOf(S.phase) !== -1; // not ended or removed meanwhile
  S.leaving = false;
  if (stillHere) finish("left");
}

/** A gap in seq: drop the socket and come back with `resume` for a fresh snapshot. */
function resync() {
  if (S.resyncing || !S.socket) return;
  S.resyncing = true;
  renderStatus();
  S.socket.disconnect();
  S.socket.connect();
}

function onWelcome(p) {
  const first = !S.welcomed;
  const askedBack = S.resumeSent ? S.place : null; // the place this connect asked for
  S.resumeSent = false;
  S.welcomed = true;
  // This connection is the one in use now (also after "Use this window instead"): a
  // later close with no reason given is a restart to come back from, not a takeover.
  S.replaced = false;
  S.retries = 0;
  S.resyncing = false;
  const room = Object.assign({}, p.room);
  // Not the place we asked for (a server that does not know resume_only let us in as
  // someone new): nothing of the old place may stay on screen as if it were this one,
  // private notes least of all.
  const other = !!(askedBack && askedBack.id && (askedBack.id !== p.you.id || askedBack.session !== room.session_id));
  if (other) {
    S.messages = [];
    S.everConsented = false;
    S.unmutePrompt = false;
    S.chatLogModerator = null; // redraw the log
  }
  S.me = p.you;
  S.resume = p.resume || null;
  S.name = p.you.name;
  S.place = { id: p.you.id, session: room.session_id };
  saveResume();
  S.people = new Map((room.participants || []).map((x) => [x.id, x]));
  delete room.participants;
  room.hands = room.hands || [];
  room.consenting = room.consenting || [];
  room.waiting = room.waiting || [];
  room.settings = room.settings || {};
  S.room = room;
  S.last = room.seq || 0;
  S.online = true;
  if (S.phase !== "room") buildRoom();
  renderAll();
  if (first && (S.startMic || S.startCam)) {
    // Only what the person chose on the join screen; never on our own.
    const want = {};
    if (S.startMic) want.mic = true;
    if (S.startCam) want.camera = true;
    S.startMic = S.startCam = false;
    act("presence.set", want);
  }
  if (first) announce(`You joined ${room.title || "the room"}.`);
  // The snapshot has no chat history: say so rather than let a gap in the talk pass
  // unseen (lines sent while we were away, or before a reload, are not shown).
  if (!other && !first) chatNote("You were disconnected for a moment. Messages sent meanwhile are not shown.");
  else if (!other && askedBack) chatNote("Messages from before this page was reloaded are not shown.");
  if (other) {
    setNotice(
      askedBack.session !== room.session_id
        ? "This is a new session of your group. Messages from before are not shown."
        : "Your earlier place had ended, so you are here as a new arrival. A raised hand or role from before was not kept.",
      "info",
    );
  }
}

function onBroadcast(ev, p) {
  if (!S.room || S.resyncing || !S.welcomed) return;
  const g = gate(S.last, ev, p);
  if (g.verdict === DUPLICATE) return;
  if (g.verdict === GAP) {
    // A chat line stands alone (the snapshot has no chat history): keep it.
    if (ev === "chat" || ev === "chat.removed") applyOrResync(ev, p);
    resync();
    return;
  }
  S.last = g.last;
  applyOrResync(ev, p);
}

/** A broadcast this page cannot read (a field missing, a newer server's shape) would
 * leave the room half-updated: take a fresh snapshot instead, as after a gap. */
function applyOrResync(ev, p) {
  try {
    APPLY[ev](p);
  } catch (e) {
    resync();
  }
}

const APPLY = {
  "participant.joined": (p) => {
    S.people.set(p.participant.id, p.participant);
    renderPeople();
    renderQueue();
  },
  "participant.updated": (p) => {
    const x = p.participant;
    S.people.set(x.id, x);
    if (x.id === S.me.id && x.role !== S.me.role) {
      const was = amModerator();
      S.me = Object.assign({}, S.me, { role: x.role });
      const label = ROLE_LABEL[x.role] || "participant";
      announce(x.role === "peer" ? "You are now a participant." : `You are now ${x.role === "facilitator" ? "the facilitator" : "a co-facilitator"}.`);
      setNotice(`Your role is now: ${label || "participant"}.`, "info");
      if (!was && amModerator()) startCheckinPoll();
      if (was && !amModerator()) {
        stopCheckinPoll();
        S.room.waiting = [];
      }
      renderAll();
      return;
    }
    renderPeople();
    renderQueue();
    renderMine();
    renderMod();
  },
  "participant.left": (p) => {
    S.people.delete(p.id);
    renderPeople();
    renderQueue();
    renderMod();
  },
  hands: (p) => {
    announceHands(S.room.hands, S.room.floor, p.hands || [], p.floor || null);
    S.room.hands = p.hands || [];
    S.room.floor = p.floor || null;
    renderFloor();
    renderQueue();
    renderPeople();
    renderMine();
    renderMod();
  },
  chat: (p) => {
    addMessage(p.message);
    const m = p.message;
    if (m && m.to === "moderators" && S.me && m.from !== S.me.id && amModerator()) {
      // "Can we talk after?" must not wait below every tile of a phone-sized page
      // until the facilitator happens to scroll there.
      setNotice(`${m.name} sent the facilitators a private note. It is in the chat.`, "info");
    }
  },
  "chat.removed": (p) => removeMessage(p.message_id),
  settings: (p) => {
    const old = S.room.settings || {};
    S.room.settings = p.settings || {};
    if (old.locked !== S.room.settings.locked && amModerator()) {
      announce(S.room.settings.locked ? "The room is locked." : "The room is open.");
    }
    if (old.chat_enabled !== S.room.settings.chat_enabled) {
      announce(S.room.settings.chat_enabled === false ? "Group chat is turned off." : "Group chat is on.");
    }
    renderAll();
  },
  consent: (p) => {
    S.room.consenting = p.consenting || [];
    renderConsent();
    renderPeople();
  },
};

function announceHands(oldHands, oldFloor, hands, floor) {
  const me = S.me.id;
  const said = [];
  if (floor !== oldFloor) {
    if (floor === me) said.push("You have the floor. Take your time.");
    else if (floor) said.push(`${nameOf(floor)} has the floor.`);
    else said.push("Nobody has the floor now.");
  }
  for (const id of hands) {
    if (oldHands.indexOf(id) === -1) said.push(id === me ? "Your hand is up." : `${nameOf(id)} raised a hand.`);
  }
  for (const id of oldHands) {
    if (hands.indexOf(id) === -1 && id !== floor) said.push(id === me ? "Your hand is down." : `${nameOf(id)} lowered a hand.`);
  }
  const pos = hands.indexOf(me);
  if (pos !== -1 && pos !== oldHands.indexOf(me)) said.push(`You are ${ordinal(pos + 1)} in line.`);
  if (said.length) announce(said.join(" "));
}

// ---------------------------------------------------------------- chat

function addMessage(m) {
  if (!m || S.messages.some((x) => x.id === m.id)) return;
  S.messages.push(m);
  const log = document.getElementById("chatlog");
  if (!log) return;
  const box = log.parentElement;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  if (S.messages.length > MAX_CHAT_LINES) {
    const gone = S.messages.shift();
    const el = log.querySelector(`[data-mid="${CSS.escape(String(gone.id))}"]`);
    if (el) el.remove();
  }
  const empty = log.querySelector(".empty");
  if (empty) empty.remove();
  log.appendChild(messageItem(m));
  if (atBottom || m.system || m.from === S.me.id) box.scrollTop = box.scrollHeight;
}

let notes = 0;
/** A line of the page's own in the chat log (not a message from anyone). */
function chatNote(text) {
  const last = S.messages[S.messages.length - 1];
  if (last && last.system && last.text === text) return; // once for a run of drops
  notes += 1;
  addMessage({ id: "note-" + notes, system: true, text });
}

function removeMessage(id) {
  const m = S.messages.find((x) => x.id === id);
  if (m) m.removed = true;
  const el = document.querySelector(`#chatlog [data-mid="${CSS.escape(String(id))}"]`);
  if (el) el.replaceWith(messageItem(m || { id, removed: true }));
}

function messageItem(m) {
  if (m.system) return h("li", { class: "msg system", "data-mid": String(m.id) }, m.text);
  if (m.removed) {
    return h("li", { class: "msg removed", "data-mid": String(m.id) }, "A message was removed by a facilitator.");
  }
  const privateNote = m.to === "moderators";
  const fromMe = S.me && m.from === S.me.id;
  const who = fromMe ? "You" : m.name || nameOf(m.from);
  const canRemove = amModerator() && !privateNote;
  return h(
    "li",
    { class: "msg" + (privateNote ? " private" : "") + (fromMe ? " own" : ""), "data-mid": String(m.id) },
    h(
      "div",
      { class: "msg-head" },
      h("span", { class: "msg-from" }, who),
      privateNote ? h("span", { class: "tag" }, fromMe ? "Private note to facilitators" : "Private note to you") : null,
      m.unsaved ? h("span", { class: "tag" }, "Not kept") : null,
      h("span", { class: "msg-time" }, clock(m.ts)),
      canRemove
        ? h(
            "button",
            {
              type: "button",
              class: "link",
              "data-key": "rm-" + m.id,
              "aria-label": fromMe ? "Remove your message" : `Remove message from ${who}`,
              onclick: () => act("mod.chat.remove", { message_id: m.id }),
            },
            "Remove",
          )
        : null,
    ),
    // dir=auto: a line in Arabic or Hebrew reads from the right, each line on its own.
    h("p", { class: "msg-text", dir: "auto" }, m.text),
  );
}

function rebuildChatLog() {
  const log = document.getElementById("chatlog");
  if (!log) return;
  S.chatLogModerator = amModerator(); // the one thing in a line that depends on the reader
  fill(log);
  if (!S.messages.length) log.appendChild(h("li", { class: "empty" }, "No messages yet."));
  for (const m of S.messages) log.appendChild(messageItem(m));
  log.parentElement.scrollTop = log.parentElement.scrollHeight;
}

// ---------------------------------------------------------------- room

function buildRoom() {
  S.phase = "room";
  S.unmutePrompt = false;
  S.confirmLeave = false;
  const chatInput = h("input", {
    id: "chat-text",
    type: "text",
    maxlength: "2000",
    autocomplete: "off",
    dir: "auto",
    "aria-describedby": "chat-status",
  });
  const privateBox = h("input", { id: "chat-private", type: "checkbox" });
  const sendBtn = h("button", { type: "submit", class: "primary", id: "chat-send" }, "Send");
  privateBox.addEventListener("change", () => {
    sendBtn.textContent = privateBox.checked ? "Send privately" : "Send";
  });
  const chatForm = h(
    "form",
    {
      class: "chat-form",
      onsubmit: async (e) => {
        e.preventDefault();
        const text = chatInput.value.trim();
        if (!text) return;
        const payload = { text };
        if (privateBox.checked) payload.to = "moderators";
        sendBtn.disabled = true;
        const ack = await send("chat.send", payload);
        sendBtn.disabled = false;
        const status = document.getElementById("chat-status");
        if (ack.stale || !status) return; // the room is no longer on screen
        if (ack.ok) {
          chatInput.value = "";
          status.textContent = payload.to ? "Private note sent to the facilitators." : "";
        } else {
          status.textContent = (ack.error && ack.error.message) || "Your message was not sent. Try again.";
        }
        chatInput.focus();
      },
    },
    h("p", { id: "chat-paused", class: "hint" }),
    h("label", { for: "chat-text" }, "Your message"),
    h("div", { class: "chat-row" }, chatInput, sendBtn),
    h("div", { class: "check" }, privateBox, h("label", { for: "chat-private" }, "Private note: only the facilitators see it")),
    h("p", { id: "chat-status", class: "hint", role: "status" }),
  );

  const title = h("h1", { id: "room-title", tabindex: "-1" });
  const root = h(
    "div",
    { class: "room" },
    h(
      "header",
      { class: "topbar" },
      h("div", { class: "topbar-text" }, title, h("p", { id: "status", class: "status" })),
      h("div", { id: "leave", class: "leave" }),
    ),
    h("div", { id: "notice" }),
    h(
      "main",
      { class: "room-main" },
      h("section", { id: "floor", class: "floor", "aria-label": "Who is speaking" }),
      h("section", { id: "mine", class: "mine", "aria-label": "Your controls" }),
      h("section", { id: "modbar", class: "modbar" }),
      h("section", { id: "queue", class: "panel", "aria-labelledby": "queue-h" }),
      h("section", { id: "people", class: "panel", "aria-labelledby": "people-h" }),
      h("section", { id: "mod", class: "panel mod" }),
    ),
    h(
      "aside",
      { class: "chat panel", "aria-labelledby": "chat-h" },
      h("h2", { id: "chat-h" }, "Chat"),
      h("div", { id: "consent", class: "consent" }),
      h("div", { class: "chatlog", role: "log", "aria-label": "Chat messages", tabindex: "0" }, h("ol", { id: "chatlog" })),
      chatForm,
    ),
    h("footer", { class: "foot" }, crisisNote()),
  );
  fill(app, root);
  rebuildChatLog();
  title.focus();
  if (amModerator()) startCheckinPoll();
}

function renderAll() {
  if (S.phase !== "room") return;
  const title = document.getElementById("room-title");
  title.textContent = S.room.title || "Your group";
  document.title = (S.room.title || "Room") + " · peerroom";
  renderStatus();
  renderLeave();
  renderNotice();
  renderFloor();
  renderMine();
  renderQueue();
  renderPeople();
  renderMod();
  renderConsent();
  renderChatSettings();
  // The log is a live region: rebuilt, a screen reader may read every line out again.
  // Lines are added one by one; the whole log is redrawn only if the reader's role
  // changed what a line shows (a moderator's Remove buttons).
  if (S.chatLogModerator !== amModerator()) rebuildChatLog();
}

/** Leaving loses your place in the queue: one small confirmation against a mis-tap. */
function renderLeave() {
  const el = document.getElementById("leave");
  if (!el) return;
  const ask = () => {
    S.confirmLeave = !S.confirmLeave;
    renderLeave();
    focusKey(S.confirmLeave ? "leave-stay" : "leave");
  };
  swap(
    el,
    S.leaving
      ? [
          // (announce() says "Leaving…" once; this span is not a live region too.) The
          // button keeps the keyboard focus: aria-disabled, not disabled, which would
          // drop it to the top of the page for the seconds the leaving takes.
          h("span", { class: "leave-q" }, "Leaving…"),
          h("button", { type: "button", class: "danger small", "data-key": "leave-yes", "aria-disabled": "true" }, "Leave now"),
        ]
      : S.confirmLeave
      ? [
          h("span", { class: "leave-q", id: "leave-q" }, "Leave the room?"),
          h("button", { type: "button", class: "danger small", "data-key": "leave-yes", "aria-describedby": "leave-q", onclick: leave }, "Leave now"),
          h("button", { type: "button", class: "secondary small", "data-key": "leave-stay", onclick: ask }, "Stay"),
        ]
      : [h("button", { type: "button", class: "secondary", "data-key": "leave", onclick: ask }, "Leave")],
  );
}

function renderStatus() {
  const el = document.getElementById("status");
  if (!el || S.phase !== "room") return;
  const n = S.people.size;
  let text;
  if (S.resyncing) text = "Catching up with the room…";
  else if (!S.online) text = "Connection lost. Reconnecting… your place is kept for a short while.";
  else text = `${n} ${n === 1 ? "person" : "people"} here`;
  el.textContent = text;
  el.classList.toggle("offline", !S.online || S.resyncing);
}

function renderNotice() {
  const el = document.getElementById("notice");
  if (!el) return;
  const parts = [];
  if (S.unmutePrompt) {
    parts.push(
      h(
        "div",
        { class: "notice prompt", role: "group", "aria-labelledby": "unmute-text" },
        h("p", { id: "unmute-text" }, "A facilitator invites you to turn your microphone on. Only if you are ready: it is your choice."),
        h(
          "div",
          { class: "row" },
          h(
            "button",
            {
              type: "button",
              class: "primary",
              "data-key": "unmute-yes",
              onclick: () => {
                S.unmutePrompt = false;
                renderNotice();
                focusAfterNotice();
                act("presence.set", { mic: true });
              },
            },
            "Turn my microphone on",
          ),
          h(
            "button",
            {
              type: "button",
              class: "secondary",
              "data-key": "unmute-no",
              onclick: () => {
                S.unmutePrompt = false;
                renderNotice();
                focusAfterNotice();
              },
            },
            "Not now",
          ),
        ),
      ),
    );
  }
  if (S.notice) {
    parts.push(
      h(
        "div",
        { class: "notice " + S.notice.kind },
        h("p", null, S.notice.text),
        h(
          "button",
          {
            type: "button",
            class: "link",
            "data-key": "notice-ok",
            onclick: () => {
              S.notice = null;
              renderNotice();
              focusAfterNotice();
            },
          },
          "OK",
        ),
      ),
    );
  }
  swap(el, parts);
}

/** A notice's button, once pressed, is gone with the notice: put a keyboard user on the
 * hand button (what they most likely came to do) instead of the top of the page. */
function focusAfterNotice() {
  const target = document.querySelector('[data-key="hand"]') || document.getElementById("room-title");
  if (target && !document.getElementById("notice").contains(document.activeElement)) target.focus();
}

function renderFloor() {
  const el = document.getElementById("floor");
  if (!el) return;
  const f = S.room.floor;
  const text = !f ? "Nobody has the floor right now." : f === S.me.id ? "You have the floor. Take your time." : `${nameOf(f)} has the floor.`;
  el.classList.toggle("has-floor", !!f);
  swap(el, [h("p", null, text)]);
}

function switchButton(key, label, on, onclick) {
  return h(
    "button",
    { type: "button", role: "switch", "aria-checked": on ? "true" : "false", class: "switch" + (on ? " on" : ""), "data-key": key, onclick },
    label,
    h("span", { class: "switch-state", "aria-hidden": "true" }, on ? "On" : "Off"),
  );
}

function renderMine() {
  const el = document.getElementById("mine");
  if (!el) return;
  const me = mine() || {};
  const pos = S.room.hands.indexOf(S.me.id);
  const up = pos !== -1;
  const handText = S.room.floor === S.me.id ? "You have the floor." : up ? `Your hand is up. You are ${ordinal(pos + 1)} in line.` : "Raise your hand when you would like to speak.";
  swap(el, [
    h(
      "button",
      {
        type: "button",
        class: "hand-button" + (up ? " up" : ""),
        "data-key": "hand",
        "aria-describedby": "hand-state",
        onclick: () => act(up ? "hand.lower" : "hand.raise", {}),
      },
      icon("hand"),
      up ? "Lower my hand" : "Raise my hand",
    ),
    h("p", { id: "hand-state", class: "hand-state" }, handText),
    h(
      "div",
      { class: "switches" },
      switchButton("mic", [icon(me.mic ? "mic" : "micOff"), "Microphone"], !!me.mic, () => act("presence.set", { mic: !me.mic })),
      switchButton("cam", [icon(me.camera ? "cam" : "camOff"), "Camera"], !!me.camera, () => act("presence.set", { camera: !me.camera })),
      switchButton("away", "Away", !!me.away, () => act("presence.set", { away: !me.away })),
    ),
  ]);
}

function renderQueue() {
  const el = document.getElementById("queue");
  if (!el) return;
  const ids = S.room.hands.filter((id) => S.people.has(id));
  const list = ids.length
    ? h(
        "ol",
        { class: "queue" },
        ids.map((id, i) =>
          h(
            "li",
            { class: id === S.me.id ? "me" : "" },
            h("span", { class: "pos", "aria-hidden": "true" }, String(i + 1)),
            h("span", { class: "sr-only" }, `${ordinal(i + 1)}: `),
            h("span", { class: "qname" }, nameOf(id)),
          ),
        ),
      )
    : h("p", { class: "empty" }, "No hands raised.");
  swap(el, [h("h2", { id: "queue-h" }, `Hands raised (${ids.length})`), list]);
}

function sortedPeople() {
  const all = Array.from(S.people.values());
  const rank = (p) => (p.id === S.me.id ? 0 : isModerator(p.role) ? 1 : 2);
  return all.sort((a, b) => rank(a) - rank(b));
}

const AVATAR_TINTS = 6;
function tint(id) {
  let n = 0;
  for (const c of String(id)) n = (n * 31 + c.charCodeAt(0)) >>> 0;
  return n % AVATAR_TINTS;
}

function renderPeople() {
  const el = document.getElementById("people");
  if (!el) return;
  const people = sortedPeople();
  swap(el, [
    h("h2", { id: "people-h" }, `Here now (${people.length})`),
    h("ul", { class: "tiles" }, people.map(tile)),
  ]);
  renderStatus();
}

function chip(cls, ...content) {
  return h("li", { class: "chip " + cls }, ...content);
}

function tile(p) {
  const isMe = p.id === S.me.id;
  const pos = S.room.hands.indexOf(p.id);
  const floor = S.room.floor === p.id;
  const chips = [];
  if (floor) chips.push(chip("floor", "Speaking"));
  if (pos !== -1) chips.push(chip("hand", icon("hand"), `Hand up, ${ordinal(pos + 1)}`));
  chips.push(chip(p.mic ? "on" : "off", icon(p.mic ? "mic" : "micOff"), p.mic ? "Mic on" : "Muted"));
  chips.push(chip(p.camera ? "on" : "off", icon(p.camera ? "cam" : "camOff"), p.camera ? "Camera on" : "Camera off"));
  if (p.via === "phone") chips.push(chip("off", icon("phone"), "By phone"));
  if (p.away) chips.push(chip("away", "Away"));
  if (p.connected === false) chips.push(chip("away", "Reconnecting…"));
  if (S.room.consenting.indexOf(p.id) !== -1) chips.push(chip("off", "Chat kept"));
  const role = ROLE_LABEL[p.role];
  return h(
    "li",
    {
      class: "tile" + (floor ? " floor" : "") + (pos !== -1 ? " raised" : "") + (p.connected === false || p.away ? " dim" : ""),
      "data-pid": p.id,
    },
    h("div", { class: `avatar t${tint(p.id)}`, "aria-hidden": "true" }, initials(p.name)),
    h(
      "div",
      { class: "tile-body" },
      h("p", { class: "tile-name" }, p.name, isMe ? h("span", { class: "you" }, " (you)") : null),
      role ? h("p", { class: "role" }, role) : null,
      h("ul", { class: "chips", "aria-label": `${p.name}: status` }, chips),
      canActOn(p) ? personActions(p, pos !== -1) : null,
    ),
  );
}

const RANK = { peer: 0, cofacilitator: 1, facilitator: 2 };

/** Same rule as the server: a moderator acts on the same or a lower role, never on self. */
function canActOn(p) {
  return amModerator() && p.id !== S.me.id && (RANK[p.role] || 0) <= (RANK[S.me.role] || 0);
}

function personActions(p, raised) {
  const k = (what) => `act-${p.id}-${what}`;
  const btn = (what, label, event, payload, cls) =>
    h("button", { type: "button", class: cls || "secondary small", "data-key": k(what), onclick: () => act(event, payload) }, label);
  const buttons = [
    btn("floor", S.room.floor === p.id ? "Take back the floor" : "Give the floor", S.room.floor === p.id ? "mod.floor.clear" : "mod.floor.give", { id: p.id }),
    raised ? btn("lower", "Lower hand", "mod.hand.lower", { id: p.id }) : null,
    p.mic
      ? btn("mute", "Mute", "mod.mute", { id: p.id })
      : S.asked.has(p.id)
        ? h("button", { type: "button", class: "secondary small", "data-key": k("unmute"), "aria-label": "Asked to unmute", disabled: true }, "Asked")
        : h("button", { type: "button", class: "secondary small", "data-key": k("unmute"), onclick: () => askToUnmute(p) }, "Ask to unmute"),
    p.camera ? btn("cam", "Stop camera", "mod.stop_camera", { id: p.id }) : null,
  ];
  if (S.me.role === "facilitator") {
    if (p.role !== "cofacilitator") buttons.push(btn("cofac", "Make co-facilitator", "mod.role", { id: p.id, role: "cofacilitator" }));
    if (p.role !== "peer") buttons.push(btn("peer", "Make participant", "mod.role", { id: p.id, role: "peer" }));
    if (p.role !== "facilitator") buttons.push(btn("fac", "Make facilitator", "mod.role", { id: p.id, role: "facilitator" }));
  }
  buttons.push(...removeButtons(p, k));
  return h(
    "details",
    { class: "actions", "data-key": k("menu") },
    h("summary", { "data-key": k("summary"), "aria-label": `Actions for ${p.name}` }, "Actions"),
    h("div", { class: "action-list" }, buttons),
  );
}

/** The person is invited, never unmuted: say it was done, and hold the button for a
 * while, so that a facilitator unsure whether it worked does not ask again and again. */
async function askToUnmute(p) {
  if (S.asked.has(p.id)) return;
  // Held at once, not when the answer comes: a second tap on a slow line would ask the
  // person twice.
  const asked = S.asked;
  asked.set(p.id, null);
  renderPeople();
  const ack = await act("mod.ask_unmute", { id: p.id });
  if (S.asked !== asked) return; // the page left the room meanwhile
  if (!ack.ok) {
    asked.delete(p.id);
    renderPeople();
    return;
  }
  asked.set(
    p.id,
    setTimeout(() => {
      asked.delete(p.id);
      if (S.asked === asked) renderPeople();
    }, ASKED_MS),
  );
  setNotice(`${p.name} was asked. It's their choice.`, "info");
  renderPeople();
}

/** Removing someone (and keeping them out) is asked once more, inline, as "End the
 * session" is: a mis-tap on a small screen must not put a person out of their group. */
function removeButtons(p, k) {
  const sure = S.confirmRemove && S.confirmRemove.id === p.id ? S.confirmRemove : null;
  const ask = (ban) => {
    S.confirmRemove = { id: p.id, ban };
    renderPeople();
    focusKey(k("remove-no"));
  };
  if (!sure) {
    return [
      h("button", { type: "button", class: "danger small", "data-key": k("remove"), onclick: () => ask(false) }, "Remove from room"),
      h("button", { type: "button", class: "danger small", "data-key": k("ban"), onclick: () => ask(true) }, "Remove and keep out"),
    ];
  }
  const cancel = () => {
    S.confirmRemove = null;
    renderPeople();
    focusKey(k(sure.ban ? "ban" : "remove"));
  };
  const yes = () => {
    S.confirmRemove = null;
    renderPeople();
    act("mod.remove", sure.ban ? { id: p.id, ban: true } : { id: p.id });
  };
  return [
    h(
      "div",
      { class: "confirm", role: "group", "aria-labelledby": k("remove-q") },
      h("p", { id: k("remove-q") }, sure.ban ? `Remove ${p.name} and keep them out of this session?` : `Remove ${p.name} from the room?`),
      h(
        "div",
        { class: "row" },
        h("button", { type: "button", class: "danger small", "data-key": k("remove-yes"), onclick: yes }, sure.ban ? "Yes, remove and keep out" : "Yes, remove"),
        h("button", { type: "button", class: "secondary small", "data-key": k("remove-no"), onclick: cancel }, "Cancel"),
      ),
    ),
  ];
}

/** One person waiting to be let in: let in, not now, or keep out (asked once more). */
function waitingItem(w) {
  if (S.confirmKeepOut === w.id) {
    const cancel = () => {
      S.confirmKeepOut = null;
      renderMod();
      focusKey("ban-" + w.id);
    };
    const yes = () => {
      S.confirmKeepOut = null;
      renderMod();
      act("mod.deny", { id: w.id, ban: true });
    };
    return h(
      "li",
      { class: "confirm", role: "group", "aria-labelledby": "keep-q-" + w.id },
      h("p", { id: "keep-q-" + w.id }, `Keep ${w.name} out of this session?`),
      h(
        "div",
        { class: "row" },
        h("button", { type: "button", class: "danger small", "data-key": "keep-yes-" + w.id, onclick: yes }, "Yes, keep out"),
        h("button", { type: "button", class: "secondary small", "data-key": "keep-no-" + w.id, onclick: cancel }, "Cancel"),
      ),
    );
  }
  const keepOut = () => {
    S.confirmKeepOut = w.id;
    renderMod();
    focusKey("keep-no-" + w.id);
  };
  return h(
    "li",
    null,
    h("span", { class: "wname" }, w.name),
    // Their line dropped: the place is kept for a minute. Letting them in now works
    // too: they come into the room as soon as they are back.
    w.connected === false ? h("span", { class: "wstate" }, " reconnecting…") : null,
    h("button", { type: "button", class: "primary small", "data-key": "admit-" + w.id, "aria-label": `Let in: ${w.name}`, onclick: () => act("mod.admit", { id: w.id }) }, "Let in"),
    h("button", { type: "button", class: "secondary small", "data-key": "deny-" + w.id, "aria-label": `Not now: ${w.name}`, onclick: () => act("mod.deny", { id: w.id }) }, "Not now"),
    h("button", { type: "button", class: "danger small", "data-key": "ban-" + w.id, "aria-label": `Keep out: ${w.name}`, onclick: keepOut }, "Keep out"),
  );
}

function renderMod() {
  const bar = document.getElementById("modbar");
  const el = document.getElementById("mod");
  if (!bar || !el) return;
  if (!amModerator()) {
    bar.hidden = true;
    el.hidden = true;
    swap(bar, []);
    swap(el, []);
    return;
  }
  bar.hidden = false;
  el.hidden = false;
  const st = S.room.settings || {};
  const nextName = S.room.hands.length ? nameOf(S.room.hands[0]) : null;
  const toCall = S.checkins.items.filter((x) => x.status !== "ok").length;
  swap(bar, [
    h("h2", { class: "sr-only" }, "Facilitator quick actions"),
    toCall
      ? h(
          "p",
          { class: "to-call" },
          h("a", { href: "#checkins-h", "data-key": "to-call" }, `${toCall} phone check-in${toCall === 1 ? "" : "s"} waiting for a call`),
        )
      : null,
    h(
      "div",
      { class: "row" },
      h(
        "button",
        { type: "button", class: "primary", "data-key": "next", disabled: !nextName, onclick: () => act("mod.floor.next", {}) },
        nextName ? `Next speaker: ${nextName}` : "Next speaker",
      ),
      h("button", { type: "button", class: "secondary", "data-key": "clear-floor", disabled: !S.room.floor, onclick: () => act("mod.floor.clear", {}) }, "Clear the floor"),
      h("button", { type: "button", class: "secondary", "data-key": "clear-hands", disabled: !S.room.hands.length, onclick: () => act("mod.hands.clear", {}) }, "Lower all hands"),
    ),
  ]);

  const waiting = S.room.waiting || [];
  const waitingList = waiting.length
    ? h(
        "ul",
        { class: "waiting" },
        waiting.map(waitingItem),
      )
    : h("p", { class: "empty" }, "Nobody is waiting.");

  const order = h(
    "select",
    {
      id: "queue-order",
      "data-key": "queue-order",
      onchange: (e) => act("mod.settings", { queue_order: e.target.value }),
    },
    h("option", { value: "time", selected: st.queue_order !== "quieter_first" ? "" : null }, "In the order hands went up"),
    h("option", { value: "quieter_first", selected: st.queue_order === "quieter_first" ? "" : null }, "Quieter voices first"),
  );

  const endBlock = S.me.role === "facilitator"
    ? S.confirmEnd
      ? h(
          "div",
          { class: "confirm", role: "group", "aria-labelledby": "end-q" },
          h("p", { id: "end-q" }, "End the session for everyone now?"),
          h(
            "div",
            { class: "row" },
            h("button", { type: "button", class: "danger", "data-key": "end-yes", onclick: () => act("mod.end", {}) }, "Yes, end it"),
            h("button", { type: "button", class: "secondary", "data-key": "end-no", onclick: () => { S.confirmEnd = false; renderMod(); focusKey("end"); } }, "Cancel"),
          ),
        )
      : h("button", { type: "button", class: "danger", "data-key": "end", onclick: () => { S.confirmEnd = true; renderMod(); focusKey("end-no"); } }, "End the session")
    : null;

  swap(el, [
    h("h2", { id: "mod-h" }, "Facilitator tools"),
    h(
      "div",
      { class: "mod-grid" },
      h(
        "div",
        { class: "mod-block" },
        h("h3", null, `Waiting to join (${waiting.length})`),
        waitingList,
        switchButton("waiting-room", "Waiting room", !!st.waiting_room, () => act("mod.waiting_room", { on: !st.waiting_room })),
        switchButton("lock", "Room locked", !!st.locked, () => act("mod.lock", { locked: !st.locked })),
      ),
      h(
        "div",
        { class: "mod-block" },
        h("h3", null, "Turns and sound"),
        h("label", { for: "queue-order" }, "Queue order"),
        order,
        h("button", { type: "button", class: "secondary", "data-key": "mute-all", onclick: () => act("mod.mute_all", {}) }, "Mute everyone but facilitators"),
        switchButton("chat-on", "Group chat", st.chat_enabled !== false, () => act("mod.settings", { chat_enabled: st.chat_enabled === false })),
        switchButton("transcripts", "Transcripts allowed", st.transcripts_allowed !== false, () => act("mod.settings", { transcripts_allowed: st.transcripts_allowed === false })),
      ),
      checkinBlock(),
      endBlock ? h("div", { class: "mod-block" }, h("h3", null, "Session"), endBlock) : null,
    ),
  ]);
}

function focusKey(key) {
  const el = document.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (el) el.focus();
}

// ---------------------------------------------------------------- check-ins

const CHECKIN_STATUS = { ok: "Doing OK", callback: "Asks for a call back", talk: "Would like to talk" };

function checkinBlock() {
  const c = S.checkins;
  let body;
  if (c.state === "loading" && !c.items.length) body = h("p", { class: "empty" }, "Loading check-ins…");
  else if (c.state === "unavailable" || c.state === "error") body = h("p", { class: "empty" }, c.message);
  else if (!c.items.length && c.state === "stale") body = h("p", { class: "empty" }, c.message);
  else if (!c.items.length) body = h("p", { class: "empty" }, "No open check-ins.");
  else {
    body = h(
      "ul",
      { class: "checkins" },
      c.items.map((it) => {
        const status = CHECKIN_STATUS[it.status] || String(it.status || "Check-in");
        const when = clock(it.created_at || it.ts);
        return h(
          "li",
          { class: it.status === "ok" ? "" : "callback" },
          h("p", null, h("strong", null, status), when ? h("span", { class: "hint" }, " · " + when) : null),
          // The full number comes (over HTTP only) where someone must call back.
          it.number
            ? h("p", null, h("a", { href: "tel:" + String(it.number).replace(/[^0-9+]/g, "") }, "Call " + it.number))
            : it.caller
              ? h("p", { class: "hint" }, "Caller " + it.caller)
              : null,
          h(
            "button",
            {
              type: "button",
              class: "secondary small",
              "data-key": "resolve-" + it.id,
              "aria-label": `Mark as done: ${status}${when ? ", " + when : ""}`,
              onclick: () => resolveCheckin(it.id),
            },
            "Mark as done",
          ),
        );
      }),
    );
  }
  return h(
    "section",
    { class: "mod-block", "aria-labelledby": "checkins-h" },
    h("h3", { id: "checkins-h" }, "Phone check-ins"),
    c.state === "stale" && c.items.length ? h("p", { class: "hint" }, c.message) : null,
    body,
    h("button", { type: "button", class: "link", "data-key": "checkins-refresh", onclick: loadCheckins }, "Refresh check-ins"),
  );
}

async function loadCheckins() {
  // Loads overlap (the poll, a live notice, a refresh, a resolve): an answer to an
  // earlier one that arrives after a later one's is stale (a check-in just resolved
  // would come back, one just made would go) and is dropped.
  const asked = ++S.checkinAsked;
  const before = S.checkins.items || [];
  S.checkins.state = "loading";
  renderMod();
  let next;
  try {
    const res = await fetch("/api/checkins", { headers: { Authorization: `Bearer ${S.token}` }, cache: "no-store" });
    if (res.status === 404) {
      next = { state: "unavailable", items: [], message: "Check-ins are not available on this server yet." };
    } else if (res.status === 401 || res.status === 403) {
      next = { state: "error", items: [], message: "Check-ins are shown to facilitators who joined with the facilitator link." };
    } else if (!res.ok) {
      // The server or its database is away for a moment: keep what we had and keep
      // asking. A request to be called back must never drop out of sight.
      next = { state: "stale", items: before, message: `Could not refresh check-ins (error ${res.status}). Trying again…` };
    } else {
      const data = await res.json();
      const items = Array.isArray(data) ? data : data.checkins || data.items || [];
      const open = items.filter((x) => x && !x.resolved && !x.resolved_at);
      if (data && data.partial) {
        // The database is away: the server lists only the check-ins it kept on disk
        // meanwhile. Keep what was shown before too, so nobody drops out of sight.
        const seen = new Set(open.map((x) => x.id));
        for (const x of before) if (!seen.has(x.id)) open.push(x);
      }
      // Someone to call first, longest waiting first; "doing OK" notes after.
      const urgent = (x) => (x.status === "ok" ? 1 : 0);
      open.sort((a, b) => urgent(a) - urgent(b) || (a.created_at || 0) - (b.created_at || 0));
      next =
        data && data.partial
          ? { state: "stale", items: open, message: "The server's database is away for a moment: showing the last list and check-ins that came in since. Trying again…" }
          : { state: "ok", items: open, message: "" };
    }
  } catch (e) {
    next = { state: "stale", items: before, message: "Could not refresh check-ins (no connection). Trying again…" };
  }
  if (asked < S.checkinShown) return;
  S.checkinShown = asked;
  S.checkins = next;
  // Only a refusal ends the polling; anything else is tried again at the next tick.
  if (S.checkins.state === "unavailable" || S.checkins.state === "error") stopCheckinPoll();
  renderMod();
}

async function resolveCheckin(id) {
  try {
    const res = await fetch(`/api/checkins/${encodeURIComponent(id)}/resolve`, {
      method: "POST",
      headers: { Authorization: `Bearer ${S.token}` },
    });
    if (!res.ok) setNotice(`Could not mark the check-in as done (error ${res.status}).`, "error");
  } catch (e) {
    setNotice("Could not mark the check-in as done. Try again.", "error");
  }
  loadCheckins();
}

function startCheckinPoll() {
  stopCheckinPoll();
  loadCheckins();
  S.checkinTimer = setInterval(loadCheckins, CHECKIN_POLL_MS);
}

function stopCheckinPoll() {
  if (S.checkinTimer) clearInterval(S.checkinTimer);
  S.checkinTimer = null;
}

// ---------------------------------------------------------------- consent

function renderConsent() {
  const el = document.getElementById("consent");
  if (!el) return;
  const st = S.room.settings || {};
  const allowed = st.transcripts_allowed !== false;
  const ids = S.room.consenting.filter((id) => S.people.has(id));
  const meOn = S.room.consenting.indexOf(S.me.id) !== -1;
  if (meOn) S.everConsented = true;
  // The same words as the switch ("Keep my chat messages"): "transcribed" sounds like speech.
  const who = ids.length ? `Chat kept for: ${ids.map(nameOf).join(", ")}.` : "Nobody's chat is being kept.";
  swap(el, [
    h("p", { class: "transcribed", id: "transcribed" }, who),
    allowed
      ? switchButton("consent", "Keep my chat messages", meOn, () => act("transcript.consent", { on: !meOn }))
      : h("p", { class: "hint" }, "Transcripts are off in this room: no chat is kept."),
    h("p", { class: "hint" }, "Only messages from people who turn this on are stored. Private notes are never stored."),
    S.everConsented
      ? h(
          "button",
          {
            type: "button",
            class: "link",
            "data-key": "erase",
            onclick: async () => {
              const ack = await act("transcript.erase", {});
              if (!ack.ok) return;
              // erased: null is an erase still queued (storage away or slow): it will run.
              setNotice(
                ack.erased === null
                  ? "Your kept chat messages from this session will be deleted as soon as the server can."
                  : "Your kept chat messages from this session were deleted.",
                "info",
              );
            },
          },
          "Delete my kept messages",
        )
      : null,
  ]);
}

function renderChatSettings() {
  const input = document.getElementById("chat-text");
  const priv = document.getElementById("chat-private");
  const btn = document.getElementById("chat-send");
  if (!input || !priv) return;
  // While the group chat is paused a peer can still send a private note to the
  // facilitators (the server allows exactly that), so the box stays, set to private.
  const off = (S.room.settings || {}).chat_enabled === false && !amModerator();
  if (off && !priv.disabled) {
    S.privateBeforePause = priv.checked; // what the person had chosen, back when it resumes
    priv.checked = true;
  } else if (!off && priv.disabled) {
    priv.checked = Boolean(S.privateBeforePause);
  }
  priv.disabled = off;
  btn.textContent = priv.checked ? "Send privately" : "Send";
  const note = document.getElementById("chat-paused");
  if (note) {
    note.textContent = off
      ? "The facilitator has paused the group chat. You can still send them a private note."
      : "";
  }
}

// ---------------------------------------------------------------- start

function start() {
  if (!S.token) {
    showNoToken();
    return;
  }
  const saved = loadResume();
  if (saved && saved.resume && saved.name) {
    // A reload inside the room (old phones drop tabs): come back to the same place.
    // Only that place, never a new one: if it has ended, the join screen says so.
    S.name = saved.name;
    S.resume = saved.resume;
    S.place = saved.id ? { id: saved.id, session: saved.session } : null;
    connect();
    return;
  }
  showJoin();
}

start();
