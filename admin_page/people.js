// Agents and managers: who has the role, give it by username, take it away.

import { ApiFailure, request } from "./api.js";
import { h, replace } from "./dom.js";
import { t } from "./messages.js";
import { confirmDialog, field, pagedTable } from "./widgets.js";

const listStates = {
  agent: { text: "", sort: { field: "username", direction: 1 }, offset: 0, count: 25 },
  manager: { text: "", sort: { field: "username", direction: 1 }, offset: 0, count: 25 },
};

/** The render function of `#/agents` (type "agent") or `#/managers` (type "manager"). */
export function renderPeople(type) {
  return (main, ctx) => {
    const { can } = ctx;
    const section = type === "agent" ? t("sectionAgents") : t("sectionManagers");
    const path = `livechat/users/${type}`;
    const columns = [
      { label: t("columnUsername"), sort: "username", cell: (u) => u.username },
      { label: t("columnFullName"), sort: "name", cell: (u) => u.name || "" },
      { label: t("columnEmail"), cell: (u) => (u.emails && u.emails[0] ? u.emails[0].address : "") },
      { label: t("columnStatus"), sort: "status", cell: (u) => u.status || "" },
    ];
    if (can.changeRoles) {
      columns.push({
        label: t("columnActions"),
        cell: (u) => h("button", { type: "button", class: "danger", "aria-label": t("takeRoleLabel", { name: u.username }), onclick: () => take(u) }, t("takeRole")),
      });
    }
    const table = pagedTable({
      columns,
      state: listStates[type],
      caption: section,
      searchLabel: t("searchPeople", { section: section.toLowerCase() }),
      emptyText: t("noPeople"),
      onError: ctx.showError,
      load: async ({ text, sort, offset, count }, signal) => {
        const answer = await request("GET", path, {
          query: { text, offset, count, sort: JSON.stringify({ [sort.field]: sort.direction }) },
          signal,
        });
        return { rows: answer.users, total: answer.total };
      },
    });

    async function take(user) {
      const confirmed = await confirmDialog({
        title: t("confirmTakeTitle", { name: user.username }),
        body: type === "agent" ? t("confirmTakeAgent") : t("confirmTakeManager"),
        confirmLabel: t("confirmTake"),
      });
      if (!confirmed) return table.search.focus();
      try {
        await request("DELETE", `${path}/${encodeURIComponent(user._id)}`);
        ctx.announce(t("roleTaken", { name: user.username }));
        table.refresh();
        table.search.focus();
      } catch (error) {
        ctx.showError(error);
      }
    }

    let giveForm = null;
    if (can.changeRoles) {
      const username = field(t("giveRole"), h("input", { type: "text", autocomplete: "off", spellcheck: "false" }));
      giveForm = h(
        "form",
        {
          class: "give-role",
          novalidate: true,
          onsubmit: async (event) => {
            event.preventDefault();
            username.setError("");
            const name = username.control.value.trim();
            try {
              await request("POST", path, { body: { username: name } });
              username.control.value = "";
              ctx.announce(t("roleGiven", { name }));
              table.refresh();
            } catch (error) {
              if (!(error instanceof ApiFailure) || error.status !== 400) return ctx.showError(error);
              username.setError(error.body.error || error.message);
              username.control.focus();
            }
          },
        },
        username.element,
        h("button", { type: "submit", class: "primary" }, type === "agent" ? t("giveAgent") : t("giveManager")),
      );
    }

    replace(main, h("h1", { tabindex: "-1" }, section), giveForm, table.element);
  };
}
