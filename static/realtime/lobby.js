// The lobby: keep the room list's online counts fresh, open a room by name.
(function () {
  "use strict";

  const REFRESH_MS = 3000;
  const list = document.getElementById("rooms");
  const updated = document.getElementById("rooms-updated");
  const form = document.getElementById("open-room");
  const roomUrl = (slug) => form.dataset.roomUrl.replace("slug-placeholder", encodeURIComponent(slug));

  function row(room) {
    const item = document.createElement("li");
    item.className = "room-row";
    item.dataset.slug = room.slug;
    const link = document.createElement("a");
    link.href = roomUrl(room.slug);
    link.textContent = room.name;
    const online = document.createElement("span");
    online.className = room.online ? "online online-some" : "online";
    online.textContent = `${room.online} online`;
    item.append(link, online);
    return item;
  }

  async function refresh() {
    // Skip while the tab is hidden: nobody is looking, the server need not work.
    if (document.hidden) return;
    try {
      const response = await fetch(list.dataset.api, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        location.reload(); // the session ended: the page will redirect to the login form
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const { rooms } = await response.json();
      if (rooms.length) list.replaceChildren(...rooms.map(row));
      updated.textContent = "";
    } catch {
      updated.textContent = "offline · retrying";
    }
  }

  /** Return the slug a typed room name stands for ("Team Standup" -> "team-standup"). */
  function slugify(name) {
    return name
      .trim()
      .toLowerCase()
      .replace(/[\s_]+/g, "-")
      .replace(/[^a-z0-9-]/g, "")
      .slice(0, 50);
  }

  const input = form.elements.slug;
  input.addEventListener("input", () => {
    const slug = slugify(input.value);
    input.setCustomValidity(slug ? "" : "Use letters, digits and hyphens.");
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const slug = slugify(input.value);
    if (slug) location.assign(roomUrl(slug));
  });

  setInterval(refresh, REFRESH_MS);
  document.addEventListener("visibilitychange", refresh);
})();
