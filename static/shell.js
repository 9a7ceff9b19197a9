// The app shell: the sidebar (folded away on a wide screen, a drawer on a phone), the menus, and the
// app-wide keys: Ctrl/⌘+Shift+O new chat, Ctrl/⌘+K search, ? the shortcuts sheet. Loaded in <head>
// without defer, so a folded sidebar is folded before the first paint.
(function () {
  "use strict";

  const root = document.documentElement;
  const COLLAPSED = "mimoweb.sidebar-collapsed";
  const phone = window.matchMedia("(max-width: 48rem)");

  function remembered() {
    try { return localStorage.getItem(COLLAPSED) === "1"; } catch (e) { return false; }
  }
  function remember(collapsed) {
    try { localStorage.setItem(COLLAPSED, collapsed ? "1" : "0"); } catch (e) { /* private mode: not kept */ }
  }
  root.classList.toggle("sidebar-collapsed", remembered());

  function toggleButton() { return document.querySelector("[data-sidebar-toggle]"); }
  function sidebar() { return document.getElementById("sidebar"); }
  function drawerIsOpen() { return root.classList.contains("drawer-open"); }

  // aria-expanded says whether the sidebar shows: on a phone, whether the drawer is open.
  function showState() {
    const button = toggleButton();
    if (!button) return;
    const shown = phone.matches ? drawerIsOpen() : !root.classList.contains("sidebar-collapsed");
    button.setAttribute("aria-expanded", shown ? "true" : "false");
  }

  // The drawer is modal: the rest of the page is inert while it is open, Esc or a click
  // beside it closes it, and focus goes into it and back to the toggle.
  function setDrawer(open, returnFocus) {
    root.classList.toggle("drawer-open", open);
    const backdrop = document.querySelector("[data-drawer-backdrop]");
    if (backdrop) backdrop.hidden = !open;
    document.querySelectorAll(".site-header, main").forEach(function (element) { element.inert = open; });
    showState();
    if (open) {
      const first = sidebar().querySelector("[aria-current=page]") || sidebar().querySelector("button, input, a");
      if (first) first.focus();
    } else if (returnFocus) {
      toggleButton().focus();
    }
  }

  function toggleSidebar() {
    if (phone.matches) {
      setDrawer(!drawerIsOpen(), true);
    } else {
      const collapsed = !root.classList.contains("sidebar-collapsed");
      root.classList.toggle("sidebar-collapsed", collapsed);
      remember(collapsed);
      showState();
    }
  }

  // Turning a phone into landscape (or widening a window) must not leave a page inert.
  phone.addEventListener("change", function () { if (drawerIsOpen()) setDrawer(false, false); else showState(); });

  function closeMenus(except) {
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) {
      if (menu !== except) menu.open = false;
    });
  }

  function isTyping(target) {
    return target.closest && target.closest("input, textarea, select, [contenteditable]:not([contenteditable=false])");
  }

  // Ctrl/⌘+K: the search box beside the chats (opening the drawer on a phone), or the search page.
  function goToSearch() {
    const box = document.getElementById("sidebar-search");
    if (box) {
      if (phone.matches && !drawerIsOpen()) setDrawer(true, false);
      if (!phone.matches && root.classList.contains("sidebar-collapsed")) toggleSidebar();
      box.focus();
      return;
    }
    const onPage = document.querySelector("main form[role=search] input[name=q]");
    if (onPage) onPage.focus();
    else window.location.assign(document.body.dataset.searchUrl);
  }

  function openShortcuts() {
    const sheet = document.getElementById("shortcuts");
    if (sheet && !sheet.open) { closeMenus(null); sheet.showModal(); }
  }

  // A sidebar row: → or the context-menu key on its link opens its menu (the row's only Tab stop
  // is the link); in the menu ↑/↓ move, Esc closes it and returns to the link.
  function rowMenuKeys(event) {
    const link = event.target.closest("[data-row-link]");
    if (link && (event.key === "ArrowRight" || event.key === "ContextMenu" || (event.key === "F10" && event.shiftKey))) {
      const menu = link.parentElement.querySelector("details[data-menu]");
      event.preventDefault();
      closeMenus(menu);
      menu.open = true;
      menu.querySelector(".menu-panel button").focus();
      return true;
    }
    const menu = event.target.closest("details[data-menu][open]");
    if (!menu) return false;
    const items = Array.from(menu.querySelectorAll(".menu-panel a, .menu-panel button:not([disabled])"));
    const at = items.indexOf(event.target);
    if ((event.key === "ArrowDown" || event.key === "ArrowUp") && items.length) {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      items[(at + step + items.length) % items.length].focus();
      return true;
    }
    if (event.key === "ArrowLeft" && menu.classList.contains("row-menu")) {
      event.preventDefault();
      menu.open = false;
      menu.closest(".sidebar-item").querySelector("[data-row-link]").focus();
      return true;
    }
    return false;
  }

  document.addEventListener("keydown", function (event) {
    const command = event.ctrlKey || event.metaKey;
    if (command && event.shiftKey && !event.altKey && event.key.toLowerCase() === "o") {
      event.preventDefault();
      window.location.assign(document.body.dataset.newChatUrl);
      return;
    }
    if (command && !event.shiftKey && !event.altKey && event.key.toLowerCase() === "k") {
      event.preventDefault();
      goToSearch();
      return;
    }
    if (rowMenuKeys(event)) return;
    if (event.key === "Escape") {
      const menu = document.querySelector("details[data-menu][open]");
      if (menu) {
        event.preventDefault();  // taken: the composer's Esc (stop the answer) leaves a prevented one alone
        menu.open = false;
        const row = menu.closest(".sidebar-item");
        (row ? row.querySelector("[data-row-link]") : menu.querySelector("summary")).focus();
      } else if (drawerIsOpen()) {
        event.preventDefault();
        setDrawer(false, true);
      }
      return;
    }
    if (event.key === "?" && !command && !event.altKey && !isTyping(event.target)) {
      event.preventDefault();
      openShortcuts();
    }
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-sidebar-toggle]")) { toggleSidebar(); return; }
    if (event.target.closest("[data-drawer-backdrop]")) { setDrawer(false, true); return; }
    if (event.target.closest("[data-shortcuts-open]")) { openShortcuts(); return; }
    closeMenus(event.target.closest("details[data-menu]"));
  });

  // An action's answer (pin, delete, rename) redraws rows: no row's menu stays open over them.
  // The header's menu is left as it is: the sidebar's rows load just after the page, and shut it
  // under the pointer of whoever opened it at once.
  document.addEventListener("htmx:afterSwap", function () {
    closeMenus(document.querySelector("details.site-menu"));
  });

  document.addEventListener("DOMContentLoaded", showState);
})();
