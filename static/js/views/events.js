// Events (/events, /events/<id>): upcoming and past, planning one, and RSVP (going, interested,
// not going). Times are shown in the viewer's own time zone (the browser's, through
// Intl.DateTimeFormat, with the zone's name); the form's `datetime-local` fields are read as this
// device's local time and sent as ISO 8601 with its offset, the device's IANA zone beside them.
// Live (docs/community.md): `live:events:all` (new events wait behind a "N new events" bar;
// changes and deletions apply in place) and, on an event's page, `live:event:<id>` (RSVP counts
// as members answer, the event edited). Its organisers (the author, the group's owner and
// moderators, site moderators) edit it in a panel and delete it from its page.

import { del, get, patch, post } from "../api.js";
import { h, mount, toast } from "../dom.js";
import { byline, confirmAction, eventTimeEl, fill, formState, generalError, isMe, isStaff, keepTimesFresh, LIMITS,
  liveStreams, localInput, localIso, newBar, plural, subnav, tabs, textField, viewerTimeZone } from "../community.js";
import { navigate } from "../router.js";
import { panel, refusalText } from "../reactions.js";
import { session } from "../session.js";

const PAGE = 20;
const STATUSES = [["going", "Going"], ["interested", "Interested"], ["not_going", "Not going"]];
const organiserTime = (zone) => new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit",
  minute: "2-digit", timeZone: zone, timeZoneName: "short" });

function placeText(place) {
  if (!place) return null;
  if (place.kind === "server") return `On the ${place.server} server`;
  return place.text || null;
}

function countsText(counts) {
  const c = counts || {};
  return `${plural(c.going || 0, "going", "going")} · ${plural(c.interested || 0, "interested", "interested")}`;
}

// One event in a list: a link with its title, time (viewer's zone), place and counts.
export function eventRow(event) {
  const li = h("li", { "data-event": event.id });
  li.paint = (e) => {
    li.event = e;
    const counts = h("span", { class: "sub event-counts", "data-going": e.counts?.going ?? 0 }, countsText(e.counts));
    fill(li, h("a", { class: "item", href: `/events/${e.id}`, "data-link": true },
      h("span", { class: "avatar room-icon", "aria-hidden": "true" }, "◷"),
      h("span", { class: "grow" }, h("span", { class: "title" }, e.title),
        h("span", { class: "sub" }, eventTimeEl(e)),
        placeText(e.place) ? h("span", { class: "sub" }, placeText(e.place)) : null, counts),
      e.my_status ? h("span", { class: "badge" }, STATUSES.find(([k]) => k === e.my_status)?.[1] || e.my_status)
        : e.full ? h("span", { class: "badge" }, "full") : null));
  };
  li.paint(event);
  return li;
}

// The server's field error as the form shows it: its `place.text` / `place.server` are the "Where"
// box, and its time rules in the form's words (the fields are "Starts" and "Ends" here).
function readableDetail(detail) {
  if (String(detail.field).startsWith("place")) return { ...detail, field: "place" };
  if (detail.code === "ends_before_start") return { ...detail, message: "The event must end after it starts." };
  return detail;
}

// --- planning and editing an event ------------------------------------------------------------------

// The event's fields: empty to plan one (POST), or filled from `event` to edit it (PATCH with only
// what changed: an untouched start keeps its reminder). The `datetime-local` boxes are this device's
// local time. A refusal stays beside its field (the server's `place.text` / `place.server` are the
// "Where" box), the member's text kept. `onSaved(event)` once the server took it.
function eventForm({ groupId = null, groupName = null, event = null, onSaved = null } = {}) {
  const title = textField("Title", { name: "title", max: LIMITS.eventTitle, value: event?.title || "" });
  const description = textField("Description", { name: "description", rows: 3, required: false,
    max: LIMITS.eventDescription, value: event?.description || "" });
  const starts = textField("Starts", { name: "starts_at", type: "datetime-local", hint: "your local time",
    value: event ? localInput(event.starts_at) : "" });
  const ends = textField("Ends", { name: "ends_at", type: "datetime-local", hint: "your local time",
    value: event ? localInput(event.ends_at) : "" });
  const kindId = `event-place-kind-${event ? event.id : "new"}`;
  const kind = h("select", { name: "place_kind", id: kindId }, h("option", { value: "text" }, "A place (text)"),
    h("option", { value: "server" }, "A Minecraft server"));
  kind.value = event?.place?.kind || "text";
  const place = textField("Where", { name: "place", required: false, attrs: { placeholder: "Spawn, the nether hub…" },
    value: event?.place ? (event.place.kind === "server" ? event.place.server : event.place.text) || "" : "" });
  const capacity = textField("Capacity", { name: "capacity", type: "number", required: false,
    hint: "empty: no limit", attrs: { min: 1, inputmode: "numeric" }, value: event?.capacity ? String(event.capacity) : "" });
  const general = generalError();
  const submit = h("button", { class: "btn", type: "submit" }, event ? "Save changes" : "Create event");
  const state = formState([title, description, starts, ends, place, capacity], general);
  const zone = viewerTimeZone();
  const form = h("form", { class: "stack event-form", novalidate: true },
    groupName ? h("p", { class: "muted" }, `For the group ${groupName}`) : null,
    title.el, description.el, h("div", { class: "two" }, starts.el, ends.el),
    h("div", { class: "field" }, h("label", { for: kindId }, "Place"), kind), place.el, capacity.el,
    zone ? h("p", { class: "muted hint-line" }, `Times are in your time zone, ${zone}.`) : null, general, submit);
  const initial = { title: title.input.value, description: description.input.value, starts: starts.input.value,
    ends: ends.input.value, kind: kind.value, place: place.input.value, capacity: capacity.input.value };

  function placeValue() {
    const where = place.input.value.trim();
    if (!where) return null;
    return kind.value === "server" ? { kind: "server", server: where } : { kind: "text", text: where };
  }
  // A new event: every field given. An edit: the fields that changed (`null` clears description, place, capacity).
  function body() {
    if (!event) {
      const out = { title: title.input.value.trim(), starts_at: localIso(starts.input.value), ends_at: localIso(ends.input.value) };
      if (description.input.value.trim()) out.description = description.input.value.trim();
      if (zone) out.timezone = zone;
      if (placeValue()) out.place = placeValue();
      if (capacity.input.value) out.capacity = Number(capacity.input.value);
      if (groupId) out.group_id = groupId;
      return out;
    }
    const out = {};
    if (title.input.value !== initial.title) out.title = title.input.value.trim();
    if (description.input.value !== initial.description) out.description = description.input.value.trim() || null;
    if (starts.input.value !== initial.starts) out.starts_at = localIso(starts.input.value);
    if (ends.input.value !== initial.ends) out.ends_at = localIso(ends.input.value);
    if (place.input.value !== initial.place || kind.value !== initial.kind) out.place = placeValue();
    if (capacity.input.value !== initial.capacity) out.capacity = capacity.input.value ? Number(capacity.input.value) : null;
    // The organiser's own time beside everyone's follows the zone its author now plans in.
    if ((out.starts_at || out.ends_at) && zone && isMe(event.author) && zone !== event.timezone) out.timezone = zone;
    return out;
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    state.clear();
    if (!title.input.value.trim()) { title.input.focus(); return; }
    if (!starts.input.value) { starts.input.focus(); return; }
    if (!ends.input.value) { ends.input.focus(); return; }
    if (state.over()) return;
    const fields = body();
    submit.disabled = true;
    try {
      if (!event) navigate(`/events/${(await post("/api/events", fields)).id}`);
      else onSaved(Object.keys(fields).length ? await patch(`/api/events/${event.id}`, fields) : event);
    } catch (error) {
      state.show({ ...error, message: error.message, code: error.code, status: error.status,
        details: (error.details || []).map(readableDetail) });
    } finally { submit.disabled = false; }
  });
  return form;
}

// --- the list -------------------------------------------------------------------------------------

export async function eventsView(ctx) {
  const when = ctx.query.get("when") === "past" ? "past" : "upcoming";
  const groupId = Number(ctx.query.get("group")) || null;
  const rows = new Map();
  let pending = [];
  let cursor = null;
  const list = h("ul", { class: "list event-list", "aria-label": when === "past" ? "Past events" : "Upcoming events" });
  const status = h("p", { class: "muted", role: "status" }, "Loading events…");
  const more = h("button", { class: "btn secondary", type: "button", hidden: true }, "More events");
  const bar = newBar("event");
  const create = h("details", { class: "card create", open: groupId ? true : null }, h("summary", {}, "Plan an event"));
  const root = h("section", { class: "community events" }, subnav("/events"), h("h1", {}, "Events"), create,
    tabs([["upcoming", "Upcoming"], ["past", "Past"]], when, "Which events",
      (key) => navigate(key === "past" ? "/events?when=past" : "/events", { replace: true })),
    bar.el, status, list, more);
  mount(root);
  keepTimesFresh(ctx, root);
  let groupName = null;
  if (groupId) {
    try { groupName = (await get(`/api/groups/${groupId}`)).name; } catch { /* planned without the group */ }
    if (!ctx.current()) return;
  }
  create.append(eventForm({ groupId: groupName ? groupId : null, groupName }));

  function show(event, where) {
    pending = pending.filter((e) => e.id !== event.id);
    bar.set(pending.length);
    if (rows.has(event.id)) { rows.get(event.id).paint(event); return; }
    const li = eventRow(event);
    rows.set(event.id, li);
    if (where === "sorted") {
      const after = [...list.children].find((other) => new Date(other.event.starts_at) > new Date(event.starts_at));
      list.insertBefore(li, after || null);
    } else list.append(li);
    status.hidden = true;
  }
  async function load(reset) {
    const page = await get(`/api/events?when=${when}&limit=${PAGE}${!reset && cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    if (reset) { rows.clear(); fill(list); pending = []; bar.set(0); }
    for (const e of page.items) show(e, "end");
    cursor = page.next;
    more.hidden = !cursor;
    status.hidden = rows.size > 0;
    status.textContent = when === "past" ? "No past events." : "Nothing planned yet.";
  }
  more.addEventListener("click", () => load(false).catch((e) => toast(e.message)));
  bar.el.addEventListener("click", async () => {
    if (bar.el.dataset.unknown === "true") await load(true).catch((e) => toast(e.message));
    else for (const e of pending) show(e, "sorted");
    pending = [];
    bar.set(0);
  });
  const isUpcoming = (e) => new Date(e.ends_at || e.starts_at) > new Date();
  const streams = liveStreams(ctx, root, {
    onEvent(channel, data) {
      if (data.type === "event_created" && data.event) {
        if (rows.has(data.event.id) || pending.some((e) => e.id === data.event.id)) return;
        if ((when === "upcoming") !== isUpcoming(data.event)) return;
        pending.push(data.event);
        bar.set(pending.length);
      } else if (data.type === "event_updated" && data.event) {
        const li = rows.get(data.event.id);
        if (li) li.paint({ ...li.event, ...data.event, my_status: data.event.my_status ?? li.event.my_status });
        else pending = pending.map((e) => (e.id === data.event.id ? { ...e, ...data.event } : e));
      } else if (data.type === "event_deleted") {
        rows.get(data.id)?.remove();
        rows.delete(data.id);
        pending = pending.filter((e) => e.id !== data.id);
        bar.set(pending.length);
      }
    },
    onReset: () => bar.set(pending.length, { unknown: true }),
  });
  streams.follow("live:events:all");
  await streams.settled();
  if (!ctx.current()) return;
  try {
    await load(true);
  } catch (e) {
    status.className = "error";
    status.textContent = navigator.onLine ? `Events could not be loaded: ${e.message}` : "You are offline: events show once connected.";
  }
  streams.ready();
}

// --- one event ------------------------------------------------------------------------------------

export async function eventView(ctx) {
  const id = Number(ctx.params.id);
  const root = h("section", { class: "community event-page" }, subnav("/events"), h("p", { class: "muted", role: "status" }, "Loading…"));
  mount(root);
  let event = null;
  let editDialog = null;
  const streams = liveStreams(ctx, root, {
    onEvent(channel, data) {
      if (!event) return;
      if (data.type === "rsvp" && data.counts) {
        event.counts = data.counts;
        if (data.user && session.me && data.user.username === session.me.username) event.my_status = data.status;
        paint();
      } else if (data.type === "event_updated" && data.event) {
        event = { ...event, ...data.event, my_status: data.event.my_status ?? event.my_status };
        paint();
      } else if (data.type === "event_deleted") {
        editDialog?.close();
        fill(root, subnav("/events"), h("div", { class: "card narrow" }, h("h1", {}, "Event cancelled"),
          h("p", {}, "This event was deleted."), h("p", {}, h("a", { class: "btn", href: "/events", "data-link": true }, "All events"))));
      }
    },
    onReset: () => get(`/api/events/${id}`).then((fresh) => { event = fresh; paint(); }).catch(() => {}),
  });
  if (Number.isInteger(id) && id > 0) streams.follow(`live:event:${id}`);
  await streams.settled();
  try {
    event = await get(`/api/events/${id}`);
  } catch (e) {
    if (!ctx.current()) return;
    fill(root, subnav("/events"), h("div", { class: "card narrow" },
      h("h1", {}, e.status === 404 ? "No such event" : "This event could not be loaded"),
      h("p", {}, e.status === 404 ? "It was deleted, or you may not see it." : e.message),
      h("p", {}, h("a", { class: "btn", href: "/events", "data-link": true }, "All events"))));
    return;
  }
  if (!ctx.current()) return;
  // A group's owner and moderators organise its events too (the server decides; this only shows the buttons).
  let groupStaff = false;
  if (event.group_id && !isMe(event.author) && !isStaff()) {
    try { groupStaff = ["owner", "moderator"].includes((await get(`/api/groups/${event.group_id}`)).my_role); } catch { /* a reader */ }
    if (!ctx.current()) return;
  }
  const mayManage = () => isMe(event.author) || isStaff() || groupStaff;
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const card = h("article", { class: "card event" });

  function openEdit(opener) {
    const dialog = panel("Edit event", eventForm({ event, onSaved: (saved) => {
      event = { ...event, ...saved };
      paint();
      dialog.close();
      toast("Event saved.");
    } }));
    dialog.classList.add("event-panel", "form-panel");
    editDialog = dialog;
    dialog.addEventListener("close", () => { if (opener.isConnected) opener.focus(); });
    ctx.onLeave(() => dialog.close());
    dialog.querySelector("input")?.focus();
  }
  fill(root, subnav("/events"), card);
  keepTimesFresh(ctx, root);

  async function rsvp(status, button) {
    error.hidden = true;
    button.disabled = true;
    try {
      const answer = await post(`/api/events/${id}/rsvp`, { status });
      event.counts = answer.counts;
      event.my_status = answer.my_status;
      paint();
    } catch (e) {
      error.hidden = false;
      error.textContent = e.code === "event_full" ? "This event is full: nobody else can join as going." : refusalText(e);
      button.disabled = false;
    }
  }

  function paint() {
    document.title = `Vonix · ${event.title}`;
    const counts = event.counts || {};
    const buttons = STATUSES.map(([key, label]) => {
      const b = h("button", { class: `btn ${event.my_status === key ? "" : "secondary"}`, type: "button",
        "aria-pressed": String(event.my_status === key), "data-status": key }, label);
      b.addEventListener("click", () => rsvp(key, b));
      return b;
    });
    const zone = event.timezone && event.timezone !== viewerTimeZone() ? event.timezone : null;
    let theirs = null;
    if (zone) {
      try { theirs = organiserTime(zone).format(new Date(event.starts_at)); } catch { theirs = null; }
    }
    const manage = mayManage();
    const edit = manage ? h("button", { class: "btn secondary", type: "button", "aria-haspopup": "dialog" }, "Edit event") : null;
    edit?.addEventListener("click", () => openEdit(edit));
    fill(card,
      h("p", { class: "crumbs" }, h("a", { href: "/events", "data-link": true }, "Events"), " ›"),
      h("h1", {}, event.title),
      h("dl", { class: "facts" },
        h("div", {}, h("dt", {}, "When"), h("dd", {}, eventTimeEl(event),
          theirs ? h("span", { class: "muted organiser-time" }, ` (organiser: ${theirs})`) : null)),
        placeText(event.place) ? h("div", {}, h("dt", {}, "Where"), h("dd", {}, placeText(event.place))) : null,
        h("div", {}, h("dt", {}, "Who"), h("dd", { class: "rsvp-counts" },
          h("span", { class: "count-going", "data-count": counts.going || 0 }, plural(counts.going || 0, "going", "going")), " · ",
          h("span", { class: "count-interested", "data-count": counts.interested || 0 },
            plural(counts.interested || 0, "interested", "interested")), " · ",
          h("span", { class: "count-not-going", "data-count": counts.not_going || 0 },
            plural(counts.not_going || 0, "not going", "not going")),
          event.capacity ? h("span", { class: "muted" }, ` (capacity ${event.capacity}${event.full ? ", full" : ""})`) : null)),
        event.group_id ? h("div", {}, h("dt", {}, "Group"), h("dd", {},
          h("a", { href: `/groups/${event.group_id}`, "data-link": true }, "The group's page"))) : null),
      h("div", { class: "row rsvp", role: "group", "aria-label": "Your answer" }, buttons),
      error,
      event.description ? h("p", { class: "event-description" }, event.description) : null,
      h("div", { class: "event-by" }, h("span", { class: "muted" }, "Planned by "), byline(event.author, null, { small: true })),
      manage ? h("div", { class: "row event-manage" }, edit, confirmAction("Delete event", "Delete this event for everyone?", async () => {
        await del(`/api/events/${id}`);
        toast("Event deleted.");
        navigate("/events");
      })) : null);
  }
  paint();
  streams.ready();
}
