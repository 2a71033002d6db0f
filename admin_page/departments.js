// Departments: the lists (active and archived) and one department's details (create, edit,
// or read-only), with its agents.

import { ApiFailure, prefetch, request } from "./api.js";
import { h, replace, time } from "./dom.js";
import { t } from "./messages.js";
import { confirmDialog, field, pagedTable, searchPicker } from "./widgets.js";

const AGENT_SEARCH_COUNT = 10;
// Kept across visits, so that coming back from a department finds the list as it was left.
const listStates = {
  active: { text: "", sort: { field: "name", direction: 1 }, offset: 0, count: 25 },
  archived: { text: "", sort: { field: "name", direction: 1 }, offset: 0, count: 25 },
};

const yesNo = (value) => (value ? t("yes") : t("no"));
const listPath = (archived) => (archived ? "livechat/departments/archived" : "livechat/department");
const listQuery = ({ text, sort, offset, count }) => ({ text, offset, count, sort: JSON.stringify({ [sort.field]: sort.direction }) });

/** Ask for the list that `#/departments/<rest>` will show (app.js, right after sign-in). */
export function prefetchDepartmentList(rest) {
  if (rest.length === 0 || rest[0] === "archived") {
    prefetch(listPath(rest[0] === "archived"), listQuery(listStates[rest[0] === "archived" ? "archived" : "active"]));
  }
}

/** `#/departments` and `#/departments/archived`. */
export function renderDepartmentList(main, ctx, rest) {
  const archived = rest[0] === "archived";
  const state = listStates[archived ? "archived" : "active"];
  const { can } = ctx;
  const tab = (href, label, current) => h("a", { href, "aria-current": current ? "page" : null }, label);
  const columns = [
    { label: t("columnName"), sort: "name", cell: (d) => h("a", { href: `#/departments/${encodeURIComponent(d._id)}` }, d.name || d._id) },
    { label: t("columnEmail"), sort: "email", cell: (d) => d.email || "" },
    { label: t("columnEnabled"), sort: "enabled", cell: (d) => yesNo(d.enabled) },
    { label: t("columnShowOnRegistration"), sort: "showOnRegistration", cell: (d) => yesNo(d.showOnRegistration) },
    { label: t("columnAgents"), sort: "numAgents", className: "number", cell: (d) => String(d.numAgents ?? 0) },
    { label: t("columnUpdated"), sort: "_updatedAt", cell: (d) => time(d._updatedAt) },
  ];
  const actions = (d) => {
    const name = d.name || d._id;
    const buttons = [];
    if (can.manageDepartments) {
      buttons.push(
        archived
          ? h("button", { type: "button", "aria-label": t("unarchiveLabel", { name }), onclick: () => unarchive(d) }, t("unarchive"))
          : h("button", { type: "button", "aria-label": t("archiveLabel", { name }), onclick: () => archive(d) }, t("archive")),
      );
    }
    if (can.deleteDepartments) {
      buttons.push(h("button", { type: "button", class: "danger", "aria-label": t("deleteLabel", { name }), onclick: () => remove(d) }, t("delete")));
    }
    return h("div", { class: "row-actions" }, buttons);
  };
  if (can.manageDepartments || can.deleteDepartments) columns.push({ label: t("columnActions"), cell: actions });

  const table = pagedTable({
    columns,
    state,
    caption: archived ? t("tabArchived") : t("tabActive"),
    searchLabel: t("searchDepartments"),
    tools: can.manageDepartments ? [h("a", { href: "#/departments/new", class: "button primary" }, t("newDepartment"))] : [],
    emptyText: t("noDepartments"),
    onError: ctx.showError,
    load: async (listState, signal) => {
      const answer = await request("GET", listPath(archived), { query: listQuery(listState), signal });
      return { rows: answer.departments, total: answer.total };
    },
  });

  async function act(promise, message) {
    try {
      await promise;
      ctx.announce(message);
      table.refresh();
    } catch (error) {
      ctx.showError(error);
    }
    table.search.focus(); // the row and its button may be gone: the keyboard goes on from the list's top
  }
  const idPath = (d) => `livechat/department/${encodeURIComponent(d._id)}`;
  const archive = (d) => act(request("POST", `${idPath(d)}/archive`), t("archived", { name: d.name }));
  const unarchive = (d) => act(request("POST", `${idPath(d)}/unarchive`), t("unarchived", { name: d.name }));
  async function remove(d) {
    const confirmed = await confirmDialog({
      title: t("confirmDeleteTitle", { name: d.name }),
      body: t("confirmDeleteBody", { agents: d.numAgents ?? 0 }),
      confirmLabel: t("confirmDelete"),
    });
    if (confirmed) await act(request("DELETE", idPath(d)), t("deleted", { name: d.name }));
    else table.search.focus();
  }

  replace(
    main,
    h("h1", { tabindex: "-1" }, t("sectionDepartments")),
    h("nav", { class: "tabs", "aria-label": t("departmentTabs") },
      tab("#/departments", t("tabActive"), !archived),
      tab("#/departments/archived", t("tabArchived"), archived)),
    table.element,
  );
}

// --- one department -------------------------------------------------------------------

const TEXT_FIELDS = [
  ["name", "fieldName", "text"],
  ["email", "fieldEmail", "email"],
  ["description", "fieldDescription", "textarea"],
  ["offlineMessageChannelName", "fieldOfflineChannel", "text"],
  ["abandonedRoomsCloseCustomMessage", "fieldAbandonedMessage", "textarea"],
  ["waitingQueueMessage", "fieldWaitingQueueMessage", "textarea"],
];
const FLAGS = [
  ["enabled", "fieldEnabled"],
  ["showOnRegistration", "fieldShowOnRegistration"],
  ["showOnOfflineForm", "fieldShowOnOfflineForm"],
  ["requestTagBeforeClosingChat", "fieldRequestTag"],
  ["allowReceiveForwardOffline", "fieldAllowReceiveForwardOffline"],
];
const KNOWN_KEYS = new Set([
  ...TEXT_FIELDS.map(([key]) => key), ...FLAGS.map(([key]) => key), "chatClosingTags", "fallbackForwardDepartment",
  "departmentsAllowedToForward", "_id", "_updatedAt", "numAgents", "archived", "type",
]);
// API errors that name no field in their text, by errorType -> the field they are about.
const ERROR_FIELDS = {
  "error-validating-department-chat-closing-tags": "chatClosingTags",
  "error-fallback-department-not-found": "fallbackForwardDepartment",
  "error-fallback-department-circular": "fallbackForwardDepartment",
  "error-archived-department-cant-be-enabled": "enabled",
};

/**
 * Which field an API error is about: {key} for a department field, {agent: index, key} for a
 * row of the agents sent, or null. Read from the API's own messages: ajv's "must have required
 * property 'x'", Meteor check's "… in field x" / "… in field upsert[2].count", or errorType.
 */
export function errorField(body) {
  const message = body.error || "";
  const required = /must have required property '([^']+)'/.exec(message);
  if (required) return { key: required[1] };
  const path = / in field (.+)$/.exec(message);
  if (path) {
    const agent = /^(?:upsert|agents)\[(\d+)\]\.?(\w*)/.exec(path[1]);
    if (agent) return { agent: Number(agent[1]), key: agent[2] };
    return { key: path[1].replace(/^department\./, "").split(/[.[]/)[0] };
  }
  return body.errorType && ERROR_FIELDS[body.errorType] ? { key: ERROR_FIELDS[body.errorType] } : null;
}

/** `#/departments/new` and `#/departments/<id>`. */
export async function renderDepartmentDetails(main, ctx, id) {
  const { can } = ctx;
  const creating = id === "new";
  let department = {};
  let agents = [];
  if (!creating) {
    replace(main, h("p", { class: "muted" }, t("loading")));
    const answer = await request("GET", `livechat/department/${encodeURIComponent(id)}`);
    if (!answer.department) {
      replace(main, backLink(), h("h1", { tabindex: "-1" }, t("departmentNotFound")));
      return;
    }
    department = answer.department;
    agents = (answer.agents || []).map((a) => ({ agentId: a.agentId, username: a.username, count: a.count ?? 0, order: a.order ?? 0 }));
  }
  if (creating && !can.manageDepartments) {
    replace(main, backLink(), h("h1", { tabindex: "-1" }, t("notAllowedCreate")));
    return;
  }
  const names = await departmentNames([department.fallbackForwardDepartment, ...(department.departmentsAllowedToForward || [])]);
  // A create takes its agents with the department (manage permission only); an edit's agents
  // need add-livechat-department-agents (PUT drops them silently without it), and can be edited
  // only by someone who is shown them (GET department/:_id).
  const editFields = can.manageDepartments;
  const editAgents = creating ? can.manageDepartments : can.editDepartmentAgents && can.viewDepartmentAgents;
  if (!editFields && !editAgents) {
    replace(main, backLink(), readOnlyView(department, agents, names, can));
    return;
  }
  replace(main, backLink(), departmentForm({ ctx, creating, department, agents, names, editFields, editAgents }));
}

function backLink() {
  return h("p", {}, h("a", { href: "#/departments" }, t("backToList")));
}

async function departmentNames(ids) {
  const wanted = [...new Set(ids.filter(Boolean))];
  const names = new Map();
  if (!wanted.length) return names;
  const answer = await request("GET", "livechat/department.listByIds", { query: { "ids[]": wanted } });
  for (const d of answer.departments) names.set(d._id, d.name);
  return names;
}

function readOnlyView(department, agents, names, can) {
  const row = (label, value) => [h("dt", {}, label), h("dd", {}, value === "" || value == null ? t("none") : value)];
  const custom = Object.entries(department).filter(([key]) => !KNOWN_KEYS.has(key));
  return h(
    "section",
    {},
    h("h1", { tabindex: "-1" }, t("viewDepartment", { name: department.name })),
    h("p", { class: "read-only-note" }, t("readOnly")),
    h(
      "dl",
      { class: "details" },
      TEXT_FIELDS.map(([key, label]) => row(t(label), department[key])),
      FLAGS.map(([key, label]) => row(t(label), yesNo(department[key]))),
      row(t("fieldChatClosingTags").replace(/ \(.*\)$/, ""), (department.chatClosingTags || []).join(", ")),
      row(t("fieldFallback"), names.get(department.fallbackForwardDepartment) || department.fallbackForwardDepartment),
      row(t("fieldAllowedToForward"), (department.departmentsAllowedToForward || []).map((d) => names.get(d) || d).join(", ")),
      row(t("fieldArchived"), yesNo(department.archived)),
      row(t("fieldNumAgents"), String(department.numAgents ?? 0)),
      row(t("fieldUpdated"), time(department._updatedAt)),
      custom.length ? row(t("fieldCustom"), custom.map(([k, v]) => `${k}: ${v}`).join(", ")) : null,
    ),
    h("h2", {}, t("agentsTitle")),
    can.viewDepartmentAgents ? agentsTable(agents, false).element : h("p", {}, t("agentsHidden")),
  );
}

/** The agents table; editable rows have count/order inputs and a remove button. */
function agentsTable(rows, editable, { onRemove, onChange } = {}) {
  const body = h("tbody");
  const errors = new Map(); // agentId -> message
  const table = h(
    "table",
    { class: "data agents" },
    h("caption", { class: "visually-hidden" }, t("agentsTitle")),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, t("columnAgent")),
      h("th", { scope: "col", class: "number" }, t("columnCount")),
      h("th", { scope: "col", class: "number" }, t("columnOrder")),
      editable ? h("th", { scope: "col" }, t("columnActions")) : null)),
    body,
  );
  function number(row, key, label) {
    const errorId = `agent-${row.agentId}-error`;
    const message = errors.get(row.agentId);
    return h("input", {
      type: "number",
      min: "0",
      step: "1",
      inputmode: "numeric",
      class: "narrow",
      value: String(row[key]),
      "aria-label": t(label, { name: row.username }),
      "aria-invalid": message && (!message.key || message.key === key) ? "true" : null,
      "aria-describedby": message ? errorId : null,
      oninput: (event) => {
        row[key] = event.target.value;
        onChange?.();
      },
    });
  }
  function draw() {
    replace(
      body,
      rows.length
        ? rows.map((row) => {
            const message = errors.get(row.agentId);
            return h("tr", {},
              h("th", { scope: "row" }, row.username || row.agentId,
                message ? h("p", { class: "field-error", id: `agent-${row.agentId}-error` }, message.text) : null),
              h("td", { class: "number", "data-label": t("columnCount") }, editable ? number(row, "count", "countOf") : String(row.count)),
              h("td", { class: "number", "data-label": t("columnOrder") }, editable ? number(row, "order", "orderOf") : String(row.order)),
              editable
                ? h("td", {}, h("button", {
                    type: "button",
                    "aria-label": t("removeItem", { name: row.username }),
                    onclick: () => onRemove(row),
                  }, t("remove")))
                : null);
          })
        : h("tr", {}, h("td", { colspan: editable ? 4 : 3, class: "empty" }, t("noAgents"))),
    );
  }
  draw();
  return {
    element: h("div", { class: "table-wrap" }, table),
    draw,
    setError(agentId, key, text) {
      errors.clear();
      if (agentId) errors.set(agentId, { key, text });
      draw();
    },
  };
}

function departmentForm({ ctx, creating, department, agents, names, editFields, editAgents }) {
  const { can } = ctx;
  const controls = {}; // key -> {control, setError, read()}
  const initialAgents = new Map(agents.map((a) => [a.agentId, { ...a }]));
  const rows = agents.map((a) => ({ ...a }));
  const formError = h("p", { class: "form-error", role: "alert", hidden: true });

  const textControl = (key, type) =>
    type === "textarea" ? h("textarea", { rows: 3, value: department[key] ?? "" }) : h("input", { type, value: department[key] ?? "", autocomplete: "off" });
  const textFields = TEXT_FIELDS.map(([key, label, type]) => {
    const f = field(t(label), textControl(key, type));
    controls[key] = { ...f, read: () => f.control.value };
    return f.element;
  });
  const flagFields = FLAGS.map(([key, label]) => {
    const f = field(t(label), h("input", { type: "checkbox", checked: Boolean(department[key] ?? (creating && key === "enabled")) }));
    controls[key] = { ...f, read: () => f.control.checked };
    return f.element;
  });
  const tags = field(t("fieldChatClosingTags"), h("textarea", { rows: 3, value: (department.chatClosingTags || []).join("\n") }));
  controls.chatClosingTags = {
    ...tags,
    read: () => tags.control.value.split("\n").map((s) => s.trim()).filter(Boolean),
  };

  // Departments chosen by search: one fallback, several allowed to forward to.
  const departmentSearch = async (text, signal) => {
    const selector = JSON.stringify({ term: text, exceptions: creating ? [] : [department._id] });
    const answer = await request("GET", "livechat/department.autocomplete", { query: { selector }, signal });
    return answer.items.map((item) => ({ id: item._id, label: item.name || item._id }));
  };
  let fallback = department.fallbackForwardDepartment || "";
  const fallbackShown = h("p", { class: "chosen" });
  const fallbackError = h("p", { class: "field-error", hidden: true });
  const fallbackPicker = searchPicker({
    label: t("fieldFallback"),
    search: departmentSearch,
    choose: (item) => {
      fallback = item.id;
      names.set(item.id, item.label);
      drawFallback();
    },
  });
  function drawFallback() {
    replace(
      fallbackShown,
      fallback ? names.get(fallback) || fallback : t("none"),
      fallback ? h("button", { type: "button", class: "link", "aria-label": `${t("clear")} ${t("fieldFallback")}`, onclick: () => { fallback = ""; drawFallback(); fallbackPicker.input.focus(); } }, t("clear")) : null,
    );
  }
  drawFallback();
  controls.fallbackForwardDepartment = {
    control: fallbackPicker.input,
    read: () => fallback,
    setError: errorSetter(fallbackPicker.input, fallbackError),
  };

  const allowed = [...(department.departmentsAllowedToForward || [])];
  const allowedList = h("ul", { class: "chips" });
  const allowedError = h("p", { class: "field-error", hidden: true });
  const allowedPicker = searchPicker({
    label: t("fieldAllowedToForward"),
    search: departmentSearch,
    choose: (item) => {
      if (!allowed.includes(item.id)) allowed.push(item.id);
      names.set(item.id, item.label);
      drawAllowed();
    },
  });
  function drawAllowed() {
    replace(
      allowedList,
      allowed.map((id) => {
        const name = names.get(id) || id;
        return h("li", {}, name, h("button", { type: "button", class: "link", "aria-label": t("removeItem", { name }), onclick: () => {
          allowed.splice(allowed.indexOf(id), 1);
          drawAllowed();
          allowedPicker.input.focus();
        } }, t("remove")));
      }),
    );
  }
  drawAllowed();
  controls.departmentsAllowedToForward = {
    control: allowedPicker.input,
    read: () => [...allowed],
    setError: errorSetter(allowedPicker.input, allowedError),
  };

  // Agents: added by search, count/order typed, removed; saved with the department.
  const agentTable = agentsTable(rows, editAgents, {
    onRemove: (row) => {
      rows.splice(rows.indexOf(row), 1);
      agentTable.draw();
      ctx.announce(t("agentRemoved", { name: row.username }));
      agentPicker?.input.focus();
    },
  });
  const agentPicker = editAgents && can.listAgents
    ? searchPicker({
        label: t("searchAgentToAdd"),
        search: async (text, signal) => {
          const answer = await request("GET", "livechat/users/agent", { query: { text, count: AGENT_SEARCH_COUNT }, signal });
          const have = new Set(rows.map((r) => r.agentId));
          return answer.users.filter((u) => !have.has(u._id)).map((u) => ({ id: u._id, label: u.username, username: u.username }));
        },
        choose: (item) => {
          rows.push({ agentId: item.id, username: item.username, count: 0, order: 0 });
          agentTable.draw();
          ctx.announce(t("agentAdded", { name: item.username }));
        },
      })
    : null;

  const customFields = customFieldsEditor(department, controls);

  const submit = h("button", { type: "submit", class: "primary" }, creating ? t("create") : t("save"));
  const title = creating ? t("createDepartment") : t("editDepartment", { name: department.name });
  const form = h(
    "form",
    { novalidate: true, onsubmit: (event) => { event.preventDefault(); save(); } },
    h("h1", { tabindex: "-1" }, title),
    formError,
    h("fieldset", { disabled: !editFields },
      h("legend", { class: "visually-hidden" }, title),
      h("div", { class: "grid" }, textFields.slice(0, 2)),
      h("div", { class: "flags" }, flagFields),
      textFields.slice(2, 3),
      tags.element,
      h("div", { class: "grid" },
        h("div", {}, fallbackPicker.element, fallbackShown, fallbackError),
        h("div", {}, allowedPicker.element, allowedList, allowedError)),
      textFields.slice(3),
      customFields),
    h("fieldset", { class: "agents" },
      h("legend", {}, t("agentsTitle")),
      agentPicker ? agentPicker.element : null,
      creating || can.viewDepartmentAgents ? agentTable.element : h("p", {}, t("agentsHidden"))),
    h("div", { class: "actions" }, submit),
  );

  function values() {
    const result = {};
    for (const [key, c] of Object.entries(controls)) result[key] = c.read();
    return result;
  }
  function changedFields() {
    const now = values();
    if (creating) {
      // The four keys a create requires, and every other field that holds something.
      return Object.fromEntries(Object.entries(now).filter(([key, value]) =>
        ["name", "email", "enabled", "showOnRegistration"].includes(key) || (Array.isArray(value) ? value.length : value !== "" && value !== false)));
    }
    // An edit is a merge (PUT): only what changed is sent.
    const before = (key) => department[key] ?? (Array.isArray(now[key]) ? [] : typeof now[key] === "boolean" ? false : "");
    return Object.fromEntries(Object.entries(now).filter(([key, value]) => JSON.stringify(value) !== JSON.stringify(before(key))));
  }
  const asNumber = (value) => (value === "" || value === null ? 0 : Number(value));
  function agentChanges() {
    const upsert = rows.map((r) => ({ agentId: r.agentId, username: r.username, count: asNumber(r.count), order: asNumber(r.order) }));
    const remove = [...initialAgents.keys()].filter((agentId) => !rows.some((r) => r.agentId === agentId)).map((agentId) => ({ agentId }));
    const changed =
      remove.length > 0 ||
      upsert.some((u) => {
        const before = initialAgents.get(u.agentId);
        return !before || before.count !== u.count || before.order !== u.order;
      });
    return { upsert, remove, changed };
  }

  function clearErrors() {
    formError.hidden = true;
    for (const c of Object.values(controls)) c.setError("");
    agentTable.setError(null);
  }
  /** Show an API error next to its field (or at the top); `upsert` is the agents list sent. */
  function showFailure(error, upsert) {
    if (!(error instanceof ApiFailure) || error.status === 403) return ctx.showError(error);
    const where = errorField(error.body);
    const message = error.body.error || error.message;
    formError.hidden = false;
    formError.textContent = t("fixErrors");
    if (where && where.agent !== undefined && upsert[where.agent]) {
      agentTable.setError(upsert[where.agent].agentId, where.key, message);
      form.querySelector(".agents [aria-invalid=true]")?.focus();
    } else if (where && controls[where.key]) {
      controls[where.key].setError(message);
      controls[where.key].control.focus();
    } else {
      formError.textContent = message;
    }
  }

  let busy = false;
  async function save() {
    if (busy) return;
    busy = true;
    submit.textContent = t("saving");
    clearErrors();
    const fields = editFields ? changedFields() : {};
    const agentsDiff = editAgents ? agentChanges() : { upsert: [], remove: [], changed: false };
    let upsert = agentsDiff.upsert;
    try {
      if (creating) {
        const answer = await request("POST", "livechat/department", { body: { department: fields, agents: upsert } });
        ctx.announce(t("created"));
        ctx.navigate(`#/departments`, { focusName: answer.department.name });
        return;
      }
      const path = `livechat/department/${encodeURIComponent(department._id)}`;
      if (editFields) {
        // One transaction: the fields and the agents kept or added (PUT upserts `agents`).
        const body = { department: fields };
        if (agentsDiff.changed && can.editDepartmentAgents) body.agents = upsert;
        else upsert = [];
        if (Object.keys(fields).length || body.agents || !agentsDiff.remove.length) {
          const answer = await request("PUT", path, { body });
          // What is saved now: saving again after a failed removal sends only what is left.
          department = answer.department;
          initialAgents.clear();
          for (const a of answer.agents || []) initialAgents.set(a.agentId, { agentId: a.agentId, count: a.count ?? 0, order: a.order ?? 0 });
        }
        if (agentsDiff.remove.length) {
          // Removals are not part of PUT: a second, atomic request of its own.
          upsert = [];
          try {
            await request("POST", `${path}/agents`, { body: { upsert: [], remove: agentsDiff.remove } });
          } catch (error) {
            if (!(error instanceof ApiFailure)) throw error;
            formError.hidden = false;
            formError.textContent = t("partlySaved", { error: error.message });
            return;
          }
        }
      } else if (agentsDiff.changed) {
        // Agents only: removals and upserts in one request (POST …/agents).
        await request("POST", `${path}/agents`, { body: { upsert, remove: agentsDiff.remove } });
      }
      ctx.announce(t("saved"));
      ctx.navigate("#/departments");
    } catch (error) {
      showFailure(error, upsert);
    } finally {
      busy = false;
      submit.textContent = creating ? t("create") : t("save");
    }
  }

  return form;
}

/**
 * Custom fields: the department's other keys (string, whole number or yes/no values, as the API
 * takes them), each edited with a control of its type, and new ones added by name and type. They
 * join `controls`, so they are saved and get their errors like the other fields. (A PUT merges
 * custom fields: the API has no way to remove one, so neither has the page.)
 */
function customFieldsEditor(department, controls) {
  const list = h("div", { class: "grid" });
  const kindOf = (value) => (typeof value === "boolean" ? "boolean" : Number.isInteger(value) ? "integer" : "text");
  function add(key, kind, value) {
    const control =
      kind === "boolean"
        ? h("input", { type: "checkbox", checked: Boolean(value) })
        : h("input", { type: kind === "integer" ? "number" : "text", step: kind === "integer" ? "1" : null, value: String(value ?? ""), autocomplete: "off" });
    const f = field(key, control);
    controls[key] = {
      ...f,
      read: () => (kind === "boolean" ? control.checked : kind === "integer" ? (control.value === "" ? 0 : Number(control.value)) : control.value),
    };
    list.append(f.element);
    return control;
  }
  for (const [key, value] of Object.entries(department)) {
    if (!KNOWN_KEYS.has(key)) add(key, kindOf(value), value);
  }
  const name = field(t("customName"), h("input", { type: "text", autocomplete: "off", spellcheck: "false" }));
  const kind = field(t("customType"), h("select", {},
    h("option", { value: "text" }, t("customText")),
    h("option", { value: "integer" }, t("customInteger")),
    h("option", { value: "boolean" }, t("customBoolean"))));
  const addButton = h("button", {
    type: "button",
    onclick: () => {
      const key = name.control.value.trim();
      name.setError("");
      if (!key) return name.control.focus();
      if (controls[key] || KNOWN_KEYS.has(key)) {
        name.setError(t("customExists", { name: key }));
        return name.control.focus();
      }
      const control = add(key, kind.control.value, kind.control.value === "boolean" ? false : "");
      name.control.value = "";
      control.focus();
    },
  }, t("customAdd"));
  return h("fieldset", { class: "custom" },
    h("legend", {}, t("fieldCustom")),
    list,
    h("div", { class: "custom-add" }, name.element, kind.element, addButton));
}

function errorSetter(control, slot) {
  slot.id = `${control.id}-error`;
  return (message) => {
    slot.hidden = !message;
    slot.textContent = message || "";
    if (message) {
      control.setAttribute("aria-invalid", "true");
      control.setAttribute("aria-describedby", slot.id);
    } else {
      control.removeAttribute("aria-invalid");
      control.removeAttribute("aria-describedby");
    }
  };
}
