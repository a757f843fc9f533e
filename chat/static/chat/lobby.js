// The lobby: who is here, the rooms with their online counts, open a room by name.
//
// The page holds a live connection to the lobby room (LiveClient): its
// presence events say who is on the lobby page now, and each change (someone
// arrives or leaves, a message) reads /api/rooms once, so the counts follow
// without polling. Someone leaving the lobby for a room reaches that room a
// moment after the lobby hears of it, so the read waits SETTLE_MS after the
// first event of a burst, and later events of the burst share it.
(function (Realtime) {
  "use strict";

  const LOBBY = "lobby";
  const SETTLE_MS = 1000;
  const list = document.getElementById("rooms");
  const updated = document.getElementById("rooms-updated");
  const here = document.getElementById("lobby-online");
  const hereList = document.getElementById("lobby-users");
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

  let pending = null; // the timer of the read a change asked for
  let missed = false; // a change arrived while the tab was hidden

  /** Read /api/rooms once, soon: the counts changed. */
  function roomsChanged() {
    // Skip while the tab is hidden: nobody is looking, the server need not work.
    if (document.hidden) {
      missed = true;
      return;
    }
    if (!pending) pending = setTimeout(refresh, SETTLE_MS);
  }

  async function refresh() {
    pending = null;
    missed = false;
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
      updated.textContent = "could not refresh the rooms";
    }
  }

  // -- who is in the lobby --------------------------------------------------

  let users = new Set();

  function setUsers(names) {
    users = new Set(names);
    const items = [...users].sort().map((name) => {
      const item = document.createElement("li");
      item.dataset.user = name;
      item.textContent = name;
      return item;
    });
    hereList.replaceChildren(...items);
    here.hidden = !items.length;
  }

  const client = new Realtime.LiveClient({
    wsUrl: `/ws/rooms/${LOBBY}/`,
    sseUrl: `/sse/rooms/${LOBBY}/`,
    on: {
      hello() {},
      presence(event) {
        setUsers(event.users);
        roomsChanged(); // a (re)connection: whatever changed meanwhile
      },
      presence_diff(event) {
        const next = new Set(users);
        for (const name of event.leaves || []) next.delete(name);
        for (const name of event.joins || []) next.add(name);
        setUsers(next);
        roomsChanged();
      },
      message: roomsChanged,
    },
    onDown: () => hereList.classList.add("stale"),
    onLive: () => hereList.classList.remove("stale"),
    onEnd: () => location.reload(), // the session ended: the page will redirect to the login form
  });
  Realtime.lobbyClient = client; // handy from the devtools console
  document.addEventListener("visibilitychange", () => missed && roomsChanged());
  client.connect();

  // -- open a room by name --------------------------------------------------

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
})((window.Realtime = window.Realtime || {}));
