// @mentions in the composer: typing "@" opens a list of the conversation's members (a room's
// members from GET /api/rooms/{name}/members, a DM's other member), narrowed as the member types;
// Up/Down move, Enter or Tab pick, Escape closes, a tap picks. Picking writes "@username ". A name
// typed out in full is not picked again by Enter: Enter sends the message, as without the list.
// The list sits right above the composer, inside the conversation, so it stays on screen on a
// phone with its keyboard up.

import { avatar, h } from "./dom.js";
import { session } from "./session.js";

const SHOWN = 8;
const QUERY = /(?:^|[^A-Za-z0-9_@])@([A-Za-z0-9_]{0,32})$/;
let lists = 0;

// `input`: the composer's textarea; `host`: the element the list is placed in (position: relative);
// `members()`: a promise of [{id, username, role?}]. Returns {onKey(event) -> handled, close()}.
export function mentionAutocomplete(input, host, members) {
  const id = `mentions-${++lists}`;
  const list = h("ul", { class: "mentions", id, role: "listbox", "aria-label": "Mention someone", hidden: true });
  host.append(list);
  input.setAttribute("aria-autocomplete", "list");
  let known = null;
  let loading = null;
  let shown = [];
  let active = 0;
  let query = null; // {start, end} of "@text" in the input while open

  const load = () => {
    loading ||= Promise.resolve(members()).then((found) => { known = found || []; return known; })
      .catch(() => { loading = null; return []; });
    return loading;
  };

  function close() {
    if (list.hidden) return;
    list.hidden = true;
    list.replaceChildren();
    shown = [];
    query = null;
    input.removeAttribute("aria-controls");
    input.removeAttribute("aria-activedescendant");
  }

  function paint() {
    list.replaceChildren(...shown.map((member, i) => {
      const option = h("li", { role: "option", id: `${id}-${i}`, class: "mention-option",
        "aria-selected": String(i === active), "data-username": member.username },
      avatar(member), h("span", { class: "mention-name" }, `@${member.username}`),
      member.role && member.role !== "member" ? h("span", { class: "badge" }, member.role) : null);
      // Keep the focus in the box: the pick happens on the click, the keyboard stays up.
      option.addEventListener("pointerdown", (event) => event.preventDefault());
      option.addEventListener("mousedown", (event) => event.preventDefault());
      option.addEventListener("click", () => pick(i));
      return option;
    }));
    list.hidden = shown.length === 0;
    if (list.hidden) { input.removeAttribute("aria-controls"); input.removeAttribute("aria-activedescendant"); return; }
    // Never taller than the room above the composer (a phone with its keyboard up has little).
    const frame = host.closest("#main") || document.documentElement;
    const room = host.getBoundingClientRect().top - frame.getBoundingClientRect().top - 8;
    list.style.maxHeight = `${Math.max(56, Math.min(240, Math.floor(room)))}px`;
    input.setAttribute("aria-controls", id);
    input.setAttribute("aria-activedescendant", `${id}-${active}`);
    list.children[active]?.scrollIntoView({ block: "nearest" });
  }

  async function update() {
    const caret = input.selectionStart;
    if (caret !== input.selectionEnd) { close(); return; }
    const match = input.value.slice(0, caret).match(QUERY);
    if (!match) { close(); return; }
    const typed = match[1];
    const start = caret - typed.length - 1;
    const everyone = known ?? await load();
    // The text may have moved on while the members loaded: answer only what is typed now.
    if (input.selectionStart !== caret || input.value.slice(start, caret) !== `@${typed}`) return;
    const me = session.me?.username?.toLowerCase();
    const wanted = typed.toLowerCase();
    const others = everyone.filter((m) => m.username && m.username.toLowerCase() !== me);
    const first = others.filter((m) => m.username.toLowerCase().startsWith(wanted));
    const then = others.filter((m) => !first.includes(m) && m.username.toLowerCase().includes(wanted));
    const before = shown[active]?.username;
    shown = [...first, ...then].slice(0, SHOWN);
    active = Math.max(0, shown.findIndex((m) => m.username === before));
    query = { start, end: caret };
    paint();
  }

  function pick(i) {
    const member = shown[i];
    if (!member || !query) return;
    const { start, end } = query;
    const after = input.value.slice(end).replace(/^[A-Za-z0-9_]*/, ""); // the rest of a name being typed over
    const text = `@${member.username} `;
    input.value = input.value.slice(0, start) + text + after.replace(/^ /, "");
    const caret = start + text.length;
    input.setSelectionRange(caret, caret);
    close();
    input.focus();
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }

  const complete = () => Boolean(query && shown[active]
    && input.value.slice(query.start + 1, query.end).toLowerCase() === shown[active].username.toLowerCase());

  function onKey(event) {
    if (list.hidden || !shown.length || event.isComposing) return false;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      active = (active + (event.key === "ArrowDown" ? 1 : -1) + shown.length) % shown.length;
      paint();
    } else if (event.key === "Enter" && !event.shiftKey && complete()) {
      close(); // the name is typed out already: Enter sends, as it does without the list
      return false;
    } else if ((event.key === "Enter" && !event.shiftKey) || event.key === "Tab") {
      pick(active);
    } else if (event.key === "Escape") {
      close();
    } else {
      return false;
    }
    event.preventDefault();
    event.stopPropagation();
    return true;
  }

  input.addEventListener("input", () => { update(); });
  input.addEventListener("click", () => { update(); });
  input.addEventListener("keyup", (event) => { if (["ArrowLeft", "ArrowRight", "Home", "End"].includes(event.key)) update(); });
  input.addEventListener("blur", () => setTimeout(() => { if (document.activeElement !== input) close(); }, 150));
  return { onKey, close };
}
