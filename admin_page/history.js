// A department's change history (issue 15): who changed what and when, newest first, from
// GET /api/ext/v1/livechat/department/:id/history. Shown only to callers with
// view-livechat-department-history (permissions.js); values are shown as text, never as HTML.

import { request } from "./api.js";
import { h, replace, time } from "./dom.js";
import { t } from "./messages.js";

const PAGE_SIZE = 20;

/** The History tab of department `id`. */
export async function renderDepartmentHistory(main, _ctx, id) {
  const list = h("ol", { class: "history" });
  const summary = h("p", { class: "summary", "aria-live": "polite" });
  const previous = h("button", { type: "button", onclick: () => move(-1) }, t("previousPage"));
  const next = h("button", { type: "button", onclick: () => move(1) }, t("nextPage"));
  let offset = 0;
  let total = 0;
  replace(main, h("h1", { tabindex: "-1" }, t("historyTitle")), list, h("div", { class: "pager" }, summary, previous, next));

  async function load() {
    list.setAttribute("aria-busy", "true");
    // The extension routes sit beside /api/v1: relative to it, so a path prefix is kept.
    const path = `../ext/v1/livechat/department/${encodeURIComponent(id)}/history`;
    const answer = await request("GET", path, { query: { offset, count: PAGE_SIZE } });
    total = answer.total;
    replace(list, answer.events.length ? answer.events.map(entry) : h("li", { class: "muted" }, t("historyEmpty")));
    list.removeAttribute("aria-busy");
    summary.textContent = total ? t("historyRange", { from: offset + 1, to: offset + answer.events.length, total }) : "";
    previous.disabled = offset === 0;
    next.disabled = offset + PAGE_SIZE >= total;
  }

  function move(step) {
    offset = Math.max(0, offset + step * PAGE_SIZE);
    load();
  }

  await load();
}

function entry(event) {
  return h(
    "li",
    { class: "history-entry" },
    h("p", { class: "history-head" }, h("strong", {}, t(`historyKind_${event.kind}`)), " ", actor(event.actor), " · ", time(event.time)),
    fieldChanges(event),
    agentChanges(event.agents),
  );
}

function actor(who) {
  if (who.type === "user") return t("historyByUser", { username: who.username || who.userId || "" });
  return t(who.type === "cli" ? "historyByCli" : "historyByDatabase");
}

function fieldChanges(event) {
  const keys = [...new Set([...Object.keys(event.before), ...Object.keys(event.after)])];
  if (!keys.length) return null;
  return h(
    "table",
    { class: "data history-diff" },
    h("caption", { class: "visually-hidden" }, t("historyFieldsCaption")),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("historyField")), h("th", { scope: "col" }, t("historyBefore")), h("th", { scope: "col" }, t("historyAfter")))),
    h("tbody", {}, keys.map((key) => h("tr", {}, h("th", { scope: "row" }, key), h("td", { class: "before" }, shown(event.before[key])), h("td", { class: "after" }, shown(event.after[key]))))),
  );
}

function shown(value) {
  if (value === undefined || value === null) return t("historyNoValue");
  if (typeof value === "boolean") return t(value ? "yes" : "no");
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function agentChanges(agents) {
  const lines = [
    ...agents.added.map((a) => t("historyAgentAdded", { name: a.username, count: a.count ?? 0, order: a.order ?? 0 })),
    ...agents.removed.map((a) => t("historyAgentRemoved", { name: a.username })),
    ...agents.changed.map((a) =>
      t("historyAgentChanged", { name: a.username, count: a.before.count ?? 0, order: a.before.order ?? 0, newCount: a.after.count ?? 0, newOrder: a.after.order ?? 0 }),
    ),
  ];
  return lines.length ? h("ul", { class: "history-agents" }, lines.map((line) => h("li", {}, line))) : null;
}
