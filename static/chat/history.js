// Long conversations: the page opens at the latest message and loads older
// ones above as the reader scrolls up, without moving what they are reading.
(function () {
  "use strict";

  // The messages scroll in their own area when the layout gives them one
  // (chat.css), else the page scrolls.
  function scroller() {
    const messages = document.getElementById("messages");
    if (messages && messages.scrollHeight > messages.clientHeight + 1 && getComputedStyle(messages).overflowY !== "visible") {
      return messages;
    }
    return document.scrollingElement;
  }

  // Open at the bottom, where the conversation goes on; a link to one
  // message (#message-<id>) is left to the browser. Now, not on
  // DOMContentLoaded: before htmx looks for "Older messages" in view.
  if (!location.hash && document.getElementById("messages")) {
    const area = scroller();
    area.scrollTop = area.scrollHeight;
  }

  // The server stops loading pages past a maximum window: tell it how many
  // messages this page holds already.
  document.addEventListener("htmx:configRequest", function (event) {
    if (!event.detail.elt.matches("[data-load-older], [data-load-newer]")) return;
    event.detail.parameters.shown = document.querySelectorAll("#messages > article").length;
  });

  // Older messages go in above what the reader sees: keep the distance to the
  // bottom of the scrolling area, so the messages on screen stay where they are.
  let fromBottom = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target.matches("[data-load-older]")) {
      const area = scroller();
      fromBottom = area.scrollHeight - area.scrollTop;
    }
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (fromBottom === null) return;
    const area = scroller();
    area.scrollTop = area.scrollHeight - fromBottom;
    fromBottom = null;
  });
})();
