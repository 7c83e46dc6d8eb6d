// (issue 18: filled in.)

import { h, mount } from "../dom.js";

export async function serversAdminView() { mount(h("section", {}, h("h1", {}, "Coming soon"))); }
