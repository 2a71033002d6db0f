// The admin page: the frame (header, navigation, notices), the router (`#/section/…`) and the
// session's start and end. Sections and tabs are listed in sections.js.

import { ApiFailure, currentSession, logout, onUnauthorized, request, setSession } from "./api.js";
import { h, replace } from "./dom.js";
import { t } from "./messages.js";
import { loadCapabilities } from "./permissions.js";
import { SECTIONS } from "./sections.js";
import { signInDialog, signInForm } from "./signin.js";

const app = document.getElementById("app");
const nav = h("ul", { class: "nav-links" });
const who = h("span", { class: "who" });
const header = h(
  "header",
  { class: "top", hidden: true },
  h("span", { class: "brand" }, t("appTitle")),
  h("nav", { "aria-label": t("mainNavigation") }, nav),
  h("div", { class: "account" }, who, h("button", { type: "button", onclick: signOut }, t("signOut"))),
);
const notice = h("p", { class: "notice", role: "status" });
const alert = h("p", { class: "alert", role: "alert" });
const main = h("main", { id: "main", tabindex: "-1" });
const skip = h("a", { class: "skip-link", href: "#main", onclick: (event) => { event.preventDefault(); main.focus(); } }, t("skipToContent"));

let can = null; // capabilities of the signed-in user (permissions.js)
let userId = null;
let keepNotice = false;

const ctx = {
  get can() {
    return can;
  },
  announce(message) {
    notice.textContent = message;
  },
  showError(error) {
    alert.textContent = describe(error);
  },
  navigate(hash) {
    keepNotice = true;
    if (location.hash === hash) route();
    else location.hash = hash;
  },
};

function describe(error) {
  if (!(error instanceof ApiFailure)) return String(error.message || error);
  if (error.status === 0) return t("networkError");
  return error.body.error || t("serverError", { status: error.status });
}

function parseHash() {
  return location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
}

async function route() {
  if (!can) return;
  if (!keepNotice) notice.textContent = "";
  keepNotice = false;
  alert.textContent = "";
  const visible = SECTIONS.filter((section) => section.visible(can));
  if (!visible.length) {
    replace(main, h("h1", { tabindex: "-1" }, t("notAllowedHere")));
    return;
  }
  const [first, ...rest] = parseHash();
  const section = visible.find((s) => s.id === first);
  if (!section) {
    location.replace(`#/${visible[0].id}`);
    return;
  }
  replace(nav, visible.map((s) => h("li", {}, h("a", { href: `#/${s.id}`, "aria-current": s === section ? "page" : null }, t(s.label)))));
  try {
    if (section.itemTabs && rest.length && !section.listViews.includes(rest[0])) await renderItem(section, rest[0], rest[1]);
    else await section.render(main, ctx, rest);
  } catch (error) {
    if (error.name === "AbortError") return;
    ctx.showError(error);
  }
  main.querySelector("h1")?.focus();
}

/** One item of a section (a department) with its tabs; the tab list only when there are several. */
async function renderItem(section, id, tabId) {
  const tabs = section.itemTabs.filter((tab) => tab.visible(can));
  const tab = tabs.find((candidate) => candidate.id === tabId) || tabs[0];
  const panel = h("div", { class: "tab-panel" });
  const base = `#/${section.id}/${encodeURIComponent(id)}`;
  replace(
    main,
    tabs.length > 1 && id !== "new"
      ? h("nav", { class: "tabs", "aria-label": t(section.itemLabel) },
          tabs.map((candidate) => h("a", { href: `${base}/${candidate.id}`, "aria-current": candidate === tab ? "page" : null }, t(candidate.label))))
      : null,
    panel,
  );
  await tab.render(panel, ctx, id);
}

async function enter(session, roles) {
  userId = session.userId;
  const [first, ...rest] = parseHash();
  (SECTIONS.find((s) => s.id === first) || SECTIONS[0]).prefetch?.(first ? rest : []);
  can = await loadCapabilities(roles);
  who.textContent = t("signedInAs", { username: session.username });
  header.hidden = false;
  await route();
}

function showSignIn() {
  can = null;
  userId = null;
  header.hidden = true;
  notice.textContent = "";
  alert.textContent = "";
  const { form, focus } = signInForm(async (data) => {
    const session = { userId: data.userId, authToken: data.authToken, username: data.me.username };
    setSession(session);
    await enter(session, data.me.roles || []);
  });
  replace(main, form);
  focus();
}

async function signOut() {
  await logout();
  showSignIn();
}

// A 401 anywhere: sign in again over the page. The same user carries on where they were (the
// failed call is retried); another user starts the page again, with their own permissions.
onUnauthorized(async () => {
  const data = await signInDialog();
  const session = { userId: data.userId, authToken: data.authToken, username: data.me.username };
  setSession(session);
  if (data.userId !== userId) {
    ctx.announce(t("signInOther"));
    keepNotice = true;
    await enter(session, data.me.roles || []);
  }
});

async function start() {
  document.title = t("appTitle");
  app.append(skip, header, notice, alert, main);
  window.addEventListener("hashchange", route);
  const session = currentSession();
  if (session) {
    try {
      const me = await request("GET", "me", { reauth: false });
      await enter(session, me.roles || []);
      return;
    } catch (error) {
      if (!(error instanceof ApiFailure) || error.status !== 401) {
        showSignIn();
        ctx.showError(error);
        return;
      }
      setSession(null);
    }
  }
  showSignIn();
}

start();
