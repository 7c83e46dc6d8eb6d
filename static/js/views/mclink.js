// (issue 18: filled in.)

import { h, mount } from "../dom.js";

export async function minecraftLinkView() { mount(h("section", {}, h("h1", {}, "Coming soon"))); }
