// (issue 18: filled in.)

import { h, mount } from "../dom.js";

export async function serversView() { mount(h("section", {}, h("h1", {}, "Coming soon"))); }
export async function serverView() { mount(h("section", {}, h("h1", {}, "Coming soon"))); }
