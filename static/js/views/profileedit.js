// Edit your profile (/settings/profile): picture (pick, preview before it is sent, upload, remove),
// display name, bio (with a counter against the server's limit) and who may message you directly.
// The server's reasons for refusing a field are shown under that field.

import { del, errorText, get, patch, put } from "../api.js";
import { avatar, h, mount, profilePath, toast } from "../dom.js";
import { ownProfileChanged, peopleStore } from "../people.js";
import { session } from "../session.js";
import { fieldCounter } from "../textlimit.js";

const DISPLAY_NAME_MAX = 64;
const BIO_MAX = 500;
const AVATAR_MAX_BYTES = 2 * 1024 * 1024;
const AVATAR_TYPES = ["image/png", "image/jpeg", "image/webp"];

// An upload of the member's own (a Minecraft head is a picture too, but there is nothing to remove).
function uploaded(urls) {
  return Boolean(urls && /^\/media\/avatars\//.test(new URL(urls.small || urls.large || "", location.origin).pathname));
}

function fieldError(id) {
  return h("p", { class: "error field-error", id, role: "alert", hidden: true });
}

function say(line, text) {
  line.hidden = !text;
  line.textContent = text || "";
}

// A pydantic reason reads "Value error, The display name …": the member needs the sentence only.
function reason(detail) {
  return String(detail.message || "").replace(/^Value error,\s*/i, "");
}

export async function editProfileView(ctx) {
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  mount(h("section", {}, status));
  let profile;
  try {
    profile = await get("/api/users/me");
  } catch (e) {
    if (!ctx.current()) return;
    status.className = "error";
    status.textContent = `Your profile could not be loaded: ${errorText(e)}`;
    return;
  }
  if (!ctx.current()) return;

  // --- picture --------------------------------------------------------------------------------
  // {file, url}: chosen, shown, not sent yet. The preview is the file read in this page as a data:
  // URL: the CSP's img-src allows 'self', data: and https:, not blob: object URLs.
  let picked = null;
  const picture = h("span", { class: "avatar-edit" });
  const file = h("input", { type: "file", name: "avatar", accept: AVATAR_TYPES.join(","), "aria-describedby": "avatar-error" });
  const upload = h("button", { class: "btn", type: "button", hidden: true }, "Upload picture");
  const cancel = h("button", { class: "btn secondary", type: "button", hidden: true }, "Cancel");
  const remove = h("button", { class: "btn danger", type: "button" }, "Remove picture");
  const pictureNote = h("p", { class: "muted", role: "status" });
  const avatarError = fieldError("avatar-error");

  function showPicture() {
    const img = picked ? h("img", { class: "avatar avatar-lg preview", src: picked.url, alt: "Preview of your new picture",
      width: 96, height: 96 }) : avatar(profile, { large: true, alt: "Your picture" });
    picture.replaceChildren(img);
    upload.hidden = !picked;
    cancel.hidden = !picked;
    remove.hidden = Boolean(picked) || !uploaded(profile.avatar);
    pictureNote.textContent = picked ? "Preview — not uploaded yet." : profile.avatar ? "" : "No picture: your initial is shown.";
  }
  function unpick() {
    picked = null;
    file.value = "";
  }
  const readAsUrl = (blob) => new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener("load", () => resolve(reader.result));
    reader.addEventListener("error", () => reject(reader.error));
    reader.readAsDataURL(blob);
  });
  file.addEventListener("change", async () => {
    say(avatarError, "");
    const chosen = file.files && file.files[0];
    picked = null;
    if (!chosen) return showPicture();
    if (!AVATAR_TYPES.includes(chosen.type)) {
      say(avatarError, "Choose a PNG, JPEG or WebP image.");
      unpick();
      return showPicture();
    }
    if (chosen.size > AVATAR_MAX_BYTES) {
      say(avatarError, "That image is larger than 2 MB: choose a smaller one.");
      unpick();
      return showPicture();
    }
    try {
      const url = await readAsUrl(chosen);
      if (file.files && file.files[0] === chosen) picked = { file: chosen, url };
    } catch { say(avatarError, "That file could not be read."); }
    showPicture();
  });
  cancel.addEventListener("click", () => { unpick(); say(avatarError, ""); showPicture(); });
  upload.addEventListener("click", async () => {
    if (!picked) return;
    say(avatarError, "");
    upload.disabled = true;
    pictureNote.textContent = "Uploading…";
    try {
      const body = await put("/api/users/me/avatar", picked.file);
      profile.avatar = body.avatar;
      ownProfileChanged({ avatar: body.avatar });
      unpick();
      toast("Picture updated.");
    } catch (e) {
      const detail = (e.details || []).find((d) => String(d.field || "").split(".").pop() === "avatar");
      say(avatarError, e.status === 413 ? "That image is larger than 2 MB: choose a smaller one."
        : detail ? reason(detail) : errorText(e));
    } finally {
      upload.disabled = false;
      showPicture();
    }
  });
  remove.addEventListener("click", async () => {
    say(avatarError, "");
    remove.disabled = true;
    try {
      await del("/api/users/me/avatar");
      profile.avatar = null;
      ownProfileChanged({ avatar: null });
      toast("Picture removed.");
    } catch (e) { say(avatarError, errorText(e)); } finally { remove.disabled = false; showPicture(); }
  });
  showPicture();

  // --- the form -------------------------------------------------------------------------------
  const displayName = h("input", { name: "display_name", maxlength: DISPLAY_NAME_MAX, autocomplete: "nickname",
    value: profile.display_name || "", placeholder: profile.username, "aria-describedby": "display-name-error" });
  const bio = h("textarea", { name: "bio", rows: 4, "aria-describedby": "bio-count bio-error" });
  bio.value = profile.bio || "";
  const bioCount = h("p", { class: "counter field-count", id: "bio-count", "aria-live": "polite" });
  const policyOf = (value) => h("input", { type: "radio", name: "dm_policy", value });
  const everyone = policyOf("everyone");
  const friendsOnly = policyOf("friends");
  const errors = { display_name: fieldError("display-name-error"), bio: fieldError("bio-error"),
    dm_policy: fieldError("dm-policy-error") };
  const general = h("p", { class: "error", role: "alert", hidden: true });
  const save = h("button", { class: "btn", type: "submit" }, "Save profile");
  const form = h("form", { class: "stack", "aria-label": "Profile", novalidate: true },
    h("label", {}, "Display name", h("span", { class: "hint" }, "shown instead of your username; empty: your username"),
      displayName), errors.display_name,
    h("label", {}, "Bio", h("span", { class: "hint" }, "a few words about you"), bio), bioCount, errors.bio,
    h("fieldset", { class: "choice", "aria-describedby": "dm-policy-error" }, h("legend", {}, "Who can message you directly"),
      h("label", { class: "row" }, everyone, "Everyone"), h("label", { class: "row" }, friendsOnly, "Friends only")),
    errors.dm_policy, general, save);

  function setPolicy(value) {
    everyone.checked = value !== "friends";
    friendsOnly.checked = value === "friends";
  }
  setPolicy(profile.dm_policy);
  const showCount = () => {
    const state = fieldCounter(bio.value.trim(), BIO_MAX);
    bioCount.textContent = state.text;
    bioCount.classList.toggle("error", state.over);
  };
  bio.addEventListener("input", showCount);
  showCount();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const line of [...Object.values(errors), general]) say(line, "");
    for (const input of [displayName, bio]) input.removeAttribute("aria-invalid");
    const wanted = { display_name: displayName.value.trim() || null, bio: bio.value.trim() || null,
      dm_policy: friendsOnly.checked ? "friends" : "everyone" };
    const changes = Object.fromEntries(Object.entries(wanted).filter(([name, value]) => value !== (profile[name] ?? null)));
    if (!Object.keys(changes).length) { toast("Nothing changed."); return; }
    save.disabled = true;
    try {
      profile = await patch("/api/users/me", changes);
      ownProfileChanged({ display_name: profile.display_name, bio: profile.bio, dm_policy: profile.dm_policy });
      toast("Profile saved.");
    } catch (e) {
      const rest = [];
      for (const detail of e.details || []) {
        const name = String(detail.field || "").split(".").pop();
        if (errors[name]) {
          say(errors[name], reason(detail));
          ({ display_name: displayName, bio }[name])?.setAttribute("aria-invalid", "true");
        } else rest.push(detail);
      }
      if (rest.length || !(e.details || []).length) say(general, errorText({ message: e.message, details: rest }));
      (form.querySelector("[aria-invalid=true]") || save).focus();
    } finally { save.disabled = false; }
  });

  // Changed in another tab or device: follow, unless this form holds an edit of that field.
  const onProfile = (event) => {
    const fields = event.detail;
    if ("avatar" in fields) { profile.avatar = fields.avatar; if (!picked) showPicture(); }
    if ("display_name" in fields && displayName.value.trim() === (profile.display_name || "")) {
      displayName.value = fields.display_name || "";
    }
    if ("bio" in fields && bio.value.trim() === (profile.bio || "")) { bio.value = fields.bio || ""; showCount(); }
    if ("dm_policy" in fields) setPolicy(fields.dm_policy);
    for (const name of ["display_name", "bio", "dm_policy"]) if (name in fields) profile[name] = fields[name];
  };
  peopleStore.addEventListener("profile", onProfile);
  ctx.onLeave(() => { peopleStore.removeEventListener("profile", onProfile); unpick(); });

  const me = session.me || profile;
  mount(h("section", { class: "profile-edit narrow" },
    h("div", { class: "row chat-head page-head" }, h("h1", {}, "Edit profile"),
      h("a", { class: "btn secondary", href: profilePath(me.username), "data-link": true }, "View profile")),
    h("section", { class: "card", "aria-label": "Picture" }, h("h2", {}, "Picture"),
      h("div", { class: "avatar-row" }, picture, h("div", { class: "stack grow" },
        h("label", {}, "Choose a picture", h("span", { class: "hint" }, "PNG, JPEG or WebP, up to 2 MB"), file),
        h("div", { class: "row" }, upload, cancel, remove))),
      pictureNote, avatarError),
    h("section", { class: "card", "aria-label": "About you" }, h("h2", {}, "About you"), form)));
}
