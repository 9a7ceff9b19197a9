// Long conversations: the page opens at the latest message and loads older
// ones above as the reader scrolls up, without moving what they are reading.
(function () {
  "use strict";

  // The conversation column scrolls, not the page (the app shell, mimoweb.css).
  const column = document.querySelector(".chat");

  // Open at the bottom, where the conversation goes on; a link to one
  // message (#message-<id>) is left to the browser. Now, not on
  // DOMContentLoaded: before htmx looks for "Older messages" in view.
  if (!location.hash && column && document.getElementById("messages")) column.scrollTop = column.scrollHeight;

  // The server stops loading pages past a maximum window: tell it how many
  // messages this page holds already.
  document.addEventListener("htmx:configRequest", function (event) {
    if (!event.detail.elt.matches("[data-load-older], [data-load-newer]")) return;
    event.detail.parameters.shown = document.querySelectorAll("#messages > article").length;
  });

  // Older messages go in above what the reader sees: keep the distance to the
  // bottom of the column, so the messages on screen stay where they are.
  let fromBottom = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target.matches("[data-load-older]")) {
      fromBottom = column.scrollHeight - column.scrollTop;
    }
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (fromBottom === null) return;
    column.scrollTop = column.scrollHeight - fromBottom;
    fromBottom = null;
  });
})();
