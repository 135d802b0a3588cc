// Header: log out from any page.

import { api } from "./api.js";

document.getElementById("logout")?.addEventListener("click", async () => {
  try {
    await api("/auth/logout", { method: "POST" });
  } finally {
    window.location.assign("/login");
  }
});
