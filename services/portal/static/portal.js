// Progressive enhancement only: every page works without this file.
"use strict";

// Copy buttons: put the command or token on the clipboard.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  navigator.clipboard.writeText(button.dataset.copy).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});

// Instant search: results replace the list as you type (the server renders them, escaped).
const search = document.querySelector("input[data-instant]");
if (search) {
  let timer = null;
  let latest = 0;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const ticket = ++latest;
      const url = `${search.dataset.instant}?partial=1&q=${encodeURIComponent(search.value)}`;
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok || ticket !== latest) return;
      const results = document.getElementById("results");
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html")
        .getElementById("results");
      if (results && fresh) results.replaceWith(fresh);
      history.replaceState(null, "", `?q=${encodeURIComponent(search.value)}`);
    }, 150);
  });
}

// Live activity on the dashboard, through server-sent events. Text only, never markup.
const feed = document.querySelector("[data-stream]");
if (feed && window.EventSource) {
  const source = new EventSource(feed.dataset.stream);
  source.addEventListener("activity", (event) => {
    const a = JSON.parse(event.data);
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.dateTime = a.time;
    time.textContent = "just now";
    const actor = document.createElement("strong");
    actor.textContent = a.actor || "someone";
    const type = document.createElement("span");
    type.className = "type";
    type.textContent = a.type;
    item.append(time, " ", actor, " ", type, " ");
    if (a.repository) {
      const link = document.createElement("a");
      link.href = `/r/${a.repository}` + (a.tag ? `/-/tags/${a.tag}` : "");
      link.textContent = a.repository + (a.tag ? `:${a.tag}` : "");
      item.append(link);
    } else if (a.subject) {
      item.append(a.subject);
    }
    feed.querySelector(".empty")?.remove();
    feed.prepend(item);
  });
}
