// (issue 18: the public home page; until then "/" leads to the member's home or the sign-in.)

import { HOME, navigate } from "../router.js";
import { session } from "../session.js";

export async function landingView() { navigate(session.me ? HOME : "/signin", { replace: true }); }
