// A tiny DOM builder: h("button", {class: "big", onclick: fn}, "Raise hand").
// Text is always set as text (never HTML), so names and chat are safe.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k === "html") throw new Error("no raw HTML");
      else if (k === "checked" || k === "disabled" || k === "value" || k === "open") el[k] = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

/** Empty ``el`` and put ``children`` in (arrays, and null for nothing, as in h()).
 * Element.replaceChildren would do it, but only from Chrome 86, and the client runs
 * on Chrome 64+ and Firefox 68+ (build.mjs): old phones. */
export function fill(el, ...children) {
  while (el.firstChild) el.removeChild(el.firstChild);
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (typeof c === "string" || typeof c === "number") el.appendChild(document.createTextNode(String(c)));
    else el.appendChild(c);
  }
}

// Small inline icons (no icon font, no extra request). Decorative: the text
// next to them says the same thing.
const PATHS = {
  hand: "M8 11V5.5a1.5 1.5 0 0 1 3 0V10m0-5.5v-1a1.5 1.5 0 0 1 3 0V10m0-4.5a1.5 1.5 0 0 1 3 0V10m0-2.5a1.5 1.5 0 0 1 3 0V15a7 7 0 0 1-7 7h-1a7 7 0 0 1-5.2-2.3L4 15.8a1.6 1.6 0 0 1 2.4-2.1L8 15.3V11",
  mic: "M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3zm-7 9a7 7 0 0 0 14 0M12 19v3",
  micOff: "M9 9v3a3 3 0 0 0 5.1 2.1M15 9.3V6a3 3 0 0 0-5.9-.8M5 12a7 7 0 0 0 11.9 5M19 12a7 7 0 0 1-.4 2.3M12 19v3M3 3l18 18",
  cam: "M3 7h12v10H3zM15 10.5l6-3.5v10l-6-3.5",
  camOff: "M3 7h10m2 2v8H5M15 10.5l6-3.5v10l-6-3.5M3 3l18 18",
  phone: "M6.6 10.8a15.1 15.1 0 0 0 6.6 6.6l2.2-2.2a1 1 0 0 1 1-.25 11.4 11.4 0 0 0 3.6.6 1 1 0 0 1 1 1V20a1 1 0 0 1-1 1A17 17 0 0 1 3 4a1 1 0 0 1 1-1h3.5a1 1 0 0 1 1 1c0 1.25.2 2.45.6 3.6a1 1 0 0 1-.25 1z",
};

export function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", "icon");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", PATHS[name]);
  svg.appendChild(path);
  return svg;
}

/** Where focus goes when its control is gone: the nearest menu's summary, nearest first.
 * A person's controls are keyed act-<id>-<what>[-yes|-no], their menu's summary
 * act-<id>-summary; an id may itself hold "-", and end with one. Each step drops one
 * "-part" (an empty one too), so the list always ends. */
export function summaryKeys(key) {
  const keys = [];
  let k = key;
  while (k.includes("-")) {
    k = k.replace(/-[^-]*$/, ""); // always matches while k holds a "-": k gets shorter
    if (k) keys.push(k + "-summary");
  }
  return keys;
}

/** Replace a region's children, keeping keyboard focus and open menus. */
export function swap(region, children) {
  const active = document.activeElement;
  const focusKey = active && region.contains(active) ? active.getAttribute("data-key") : null;
  const openKeys = new Set(
    Array.from(region.querySelectorAll("details[open][data-key]")).map((d) => d.getAttribute("data-key")),
  );
  fill(region, children);
  for (const d of region.querySelectorAll("details[data-key]")) {
    if (openKeys.has(d.getAttribute("data-key"))) d.open = true;
  }
  if (focusKey) {
    // The same control again; or, if it is gone (a hand lowered, someone let in),
    // its menu's summary, or the region's heading: never drop a keyboard user at the top.
    const find = (key) => region.querySelector(`[data-key="${CSS.escape(key)}"]:not([disabled])`);
    let again = find(focusKey);
    for (const key of summaryKeys(focusKey)) {
      if (again) break;
      again = find(key);
    }
    if (!again) {
      again = region.querySelector("h2, h3");
      if (again) again.setAttribute("tabindex", "-1");
    }
    if (again) again.focus();
  }
}
