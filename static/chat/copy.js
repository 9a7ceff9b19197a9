// Copy buttons for messages and code blocks, each code block's header, and citation markers as links.
// Messages arrive whole (page, htmx, socket snapshots) or block by block while they stream: a mutation
// observer finishes each one as it lands. A streaming answer's open block (its "-tail") is left alone
// until it is complete and moves into the answer's finished part.
(function () {
  "use strict";

  // One polite announcer for "Copied", made once.
  let announcer = null;
  function announce(text) {
    if (!announcer) {
      announcer = document.createElement("div");
      announcer.className = "visually-hidden";
      announcer.setAttribute("role", "status");
      document.body.append(announcer);
    }
    announcer.textContent = "";
    // A new text node in a separate task, so the same words are announced again on a second copy.
    setTimeout(function () { announcer.textContent = text; }, 50);
  }

  function writeText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain http on another host has no clipboard API: the old way still works there.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    return copied ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copy(button, text) {
    writeText(text).then(function () {
      const label = button.getAttribute("aria-label");
      button.classList.add("copied");
      button.setAttribute("title", button.dataset.copied);
      announce(button.dataset.copied);
      setTimeout(function () {
        button.classList.remove("copied");
        button.setAttribute("title", label);
      }, 2000);
    });
  }

  function makeCodeHeader(block, words) {
    const code = block.querySelector("pre > code");
    if (!code || block.querySelector(".code-header")) return;
    const header = document.createElement("div");
    header.className = "code-header";
    const language = document.createElement("span");
    language.className = "code-language";
    language.textContent = code.dataset.language || words.code;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button-quiet icon-button code-copy";
    button.setAttribute("aria-label", words.copyCode);
    button.setAttribute("title", words.copyCode);
    button.dataset.copyCode = "";
    button.dataset.copied = words.copied;
    const icon = document.createElement("span");
    icon.className = "icon icon-copy";
    icon.setAttribute("aria-hidden", "true");
    button.append(icon);
    header.append(language, button);
    block.prepend(header);
  }

  // [n] in the answer's text links to the n-th source; a marker without a source stays text.
  function linkCitations(message) {
    const sources = message.querySelectorAll(".sources li[id]");
    const answer = message.querySelector(".answer");
    if (!sources.length || !answer || answer.dataset.citationsLinked) return;
    answer.dataset.citationsLinked = "yes";
    const walker = document.createTreeWalker(answer, NodeFilter.SHOW_TEXT, {
      acceptNode: function (node) {
        return node.parentElement.closest("a, code, pre, .code-header") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT;
      },
    });
    const texts = [];
    while (walker.nextNode()) if (/\[\d+\]/.test(walker.currentNode.data)) texts.push(walker.currentNode);
    texts.forEach(function (node) {
      const parts = node.data.split(/(\[\d+\])/);
      const pieces = parts.map(function (part) {
        const match = /^\[(\d+)\]$/.exec(part);
        const source = match && sources[Number(match[1]) - 1];
        if (!source) return document.createTextNode(part);
        const link = document.createElement("a");
        link.className = "citation";
        link.href = "#" + source.id;
        link.textContent = part;
        link.title = source.querySelector("a").textContent;
        return link;
      });
      node.replaceWith.apply(node, pieces);
    });
  }

  // The element and what is inside it, matching `selector`: each new piece is looked at once, not the whole page.
  function within(element, selector) {
    const found = Array.from(element.querySelectorAll(selector));
    if (element.matches(selector)) found.unshift(element);
    return found;
  }

  function finish(element) {
    within(element, ".answer .highlight").forEach(function (block) {
      if (block.closest("[id$='-tail']")) return;
      const answer = block.closest(".answer");
      makeCodeHeader(block, { code: answer.dataset.code, copyCode: answer.dataset.copyCode, copied: answer.dataset.copied });
    });
    within(element, "article.message-assistant:not([aria-busy])").forEach(linkCitations);
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy-message], [data-copy-code]");
    if (!button) return;
    if (button.hasAttribute("data-copy-message")) {
      copy(button, button.parentElement.querySelector("template.message-source").content.textContent);
    } else {
      copy(button, button.closest(".highlight").querySelector("pre > code").textContent);
    }
  });

  function start() {
    finish(document.body);
    new MutationObserver(function (mutations) {
      mutations.forEach(function (mutation) {
        mutation.addedNodes.forEach(function (node) {
          if (node.nodeType === Node.ELEMENT_NODE) finish(node);
        });
      });
    }).observe(document.body, { childList: true, subtree: true });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
