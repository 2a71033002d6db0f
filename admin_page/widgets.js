// The page's building blocks: a paged, sortable, searchable table; a search-and-pick list;
// a confirmation dialog; labelled form fields with an error slot each.

import { debounce, h, replace, uid } from "./dom.js";
import { t } from "./messages.js";

export const SEARCH_DEBOUNCE_MS = 150;
const PAGE_SIZES = [10, 25, 50, 100];

/**
 * A table whose rows come from the server a page at a time.
 *   columns: [{label, sort?: API sort field, cell: (row) => node|string, className?}]
 *   load: ({text, sort, offset, count}, signal) => Promise<{rows, total}>
 *   state: {text, sort: {field, direction}, offset, count}, kept by the caller across visits
 *   searchLabel, caption, emptyText: texts; tools: nodes shown beside the search box
 * Returns {element, refresh}.
 */
export function pagedTable({ columns, load, state, searchLabel, caption, emptyText, tools = [], onError }) {
  const searchId = uid("search");
  const search = h("input", {
    id: searchId,
    type: "search",
    value: state.text,
    autocomplete: "off",
    spellcheck: "false",
    oninput: () => {
      state.text = search.value;
      state.offset = 0;
      searchSoon();
    },
  });
  const searchSoon = debounce(() => refresh(), SEARCH_DEBOUNCE_MS);
  const headRow = h("tr");
  const body = h("tbody");
  const table = h("table", { class: "data" }, h("caption", { class: "visually-hidden" }, caption), h("thead", {}, headRow), body);
  const summary = h("p", { class: "summary", "aria-live": "polite" });
  const previous = h("button", { type: "button", onclick: () => move(-1) }, t("previousPage"));
  const next = h("button", { type: "button", onclick: () => move(1) }, t("nextPage"));
  const sizeId = uid("size");
  const size = h(
    "select",
    {
      id: sizeId,
      onchange: () => {
        state.count = Number(size.value);
        state.offset = 0;
        refresh();
      },
    },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: n === state.count }, String(n))),
  );
  const element = h(
    "div",
    { class: "paged-table" },
    h("div", { class: "toolbar" }, h("div", { class: "field search" }, h("label", { for: searchId }, searchLabel), search), tools),
    h("div", { class: "table-wrap" }, table),
    h(
      "nav",
      { class: "pager", "aria-label": t("pagination") },
      summary,
      h("div", { class: "pager-buttons" }, previous, next),
      h("div", { class: "field inline" }, h("label", { for: sizeId }, t("pageSize")), size),
    ),
  );

  function drawHead() {
    replace(
      headRow,
      columns.map((column) => {
        if (!column.sort) return h("th", { scope: "col", class: column.className }, column.label);
        const active = state.sort.field === column.sort;
        const direction = active ? state.sort.direction : 0;
        return h(
          "th",
          { scope: "col", class: column.className, "aria-sort": active ? (direction > 0 ? "ascending" : "descending") : null },
          h(
            "button",
            { type: "button", class: "sort", onclick: () => sortBy(column.sort) },
            column.label,
            h("span", { class: `sort-mark${active ? (direction > 0 ? " up" : " down") : ""}`, "aria-hidden": "true" }),
          ),
        );
      }),
    );
  }

  function sortBy(field) {
    state.sort = { field, direction: state.sort.field === field ? -state.sort.direction : 1 };
    state.offset = 0;
    drawHead();
    headRow.querySelector(`th[aria-sort] button`)?.focus();
    refresh();
  }

  function move(step) {
    state.offset = Math.max(0, state.offset + step * state.count);
    refresh();
  }

  let controller = null;
  async function refresh() {
    controller?.abort();
    controller = new AbortController();
    const mine = controller;
    table.setAttribute("aria-busy", "true");
    try {
      const { rows, total } = await load(state, mine.signal);
      if (mine !== controller) return; // a newer refresh is on its way
      if (rows.length === 0 && state.offset > 0 && total > 0) {
        state.offset = Math.max(0, (Math.ceil(total / state.count) - 1) * state.count);
        return refresh(); // the page emptied under us (deletes elsewhere): show the last one
      }
      replace(
        body,
        rows.length
          ? rows.map((row) =>
              h("tr", {}, columns.map((column, index) => {
                const content = column.cell(row);
                return index === 0
                  ? h("th", { scope: "row", class: column.className }, content)
                  : h("td", { class: column.className, "data-label": column.label }, content);
              })),
            )
          : h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, state.text ? t("noMatches", { text: state.text }) : emptyText)),
      );
      summary.textContent = total
        ? t("listSummary", { first: state.offset + 1, last: state.offset + rows.length, total: total.toLocaleString("en") })
        : t("listSummaryEmpty");
      previous.disabled = state.offset === 0;
      next.disabled = state.offset + rows.length >= total;
      table.removeAttribute("aria-busy");
      element.dispatchEvent(new CustomEvent("refreshed"));
    } catch (error) {
      if (error.name === "AbortError") return;
      table.removeAttribute("aria-busy");
      onError?.(error);
    }
  }

  drawHead();
  refresh();
  return { element, refresh, search };
}

/**
 * A search box whose results are buttons: `search(text, signal)` resolves with
 * [{id, label}]; `choose(item)` is called on a click (or Enter/Space on the button).
 */
export function searchPicker({ label, search, choose }) {
  const inputId = uid("pick");
  const results = h("ul", { class: "pick-results" });
  const status = h("p", { class: "visually-hidden", "aria-live": "polite" });
  const input = h("input", { id: inputId, type: "search", autocomplete: "off", spellcheck: "false", oninput: () => soon() });
  let controller = null;
  const soon = debounce(async () => {
    controller?.abort();
    const text = input.value.trim();
    if (!text) {
      replace(results);
      status.textContent = "";
      return;
    }
    controller = new AbortController();
    const mine = controller;
    try {
      const items = await search(text, mine.signal);
      if (mine !== controller) return;
      replace(
        results,
        items.length
          ? items.map((item) =>
              h("li", {}, h("button", {
                type: "button",
                class: "pick",
                "aria-label": t("chooseItem", { name: item.label }),
                onclick: () => {
                  choose(item);
                  input.value = "";
                  replace(results);
                  input.focus();
                },
              }, item.label)),
            )
          : h("li", { class: "muted" }, t("noResults")),
      );
      status.textContent = t("resultsCount", { count: items.length });
    } catch (error) {
      if (error.name !== "AbortError") status.textContent = error.message;
    }
  }, SEARCH_DEBOUNCE_MS);
  const element = h("div", { class: "field picker" }, h("label", { for: inputId }, label), input, status, results);
  return { element, input };
}

/** A modal confirmation: resolves true when confirmed. Cancel has the focus first. */
export function confirmDialog({ title, body, confirmLabel }) {
  return new Promise((resolve) => {
    const titleId = uid("dialog-title");
    const cancel = h("button", { type: "button", onclick: () => close(false) }, t("cancel"));
    const confirm = h("button", { type: "button", class: "danger", onclick: () => close(true) }, confirmLabel);
    const dialog = h(
      "dialog",
      { "aria-labelledby": titleId, class: "confirm", oncancel: () => close(false) },
      h("h2", { id: titleId }, title),
      h("p", {}, body),
      h("div", { class: "actions" }, cancel, confirm),
    );
    function close(answer) {
      dialog.close();
      dialog.remove();
      resolve(answer);
    }
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/**
 * A labelled control with an error slot wired through aria-describedby. `control` is an
 * input/select/textarea (its id is set here). Returns {element, control, setError}.
 */
export function field(label, control, { className = "" } = {}) {
  const id = uid("field");
  const errorId = `${id}-error`;
  control.id = id;
  const error = h("p", { id: errorId, class: "field-error", hidden: true });
  const checkbox = control.type === "checkbox";
  const element = checkbox
    ? h("div", { class: `field checkbox ${className}` }, control, h("label", { for: id }, label), error)
    : h("div", { class: `field ${className}` }, h("label", { for: id }, label), control, error);
  function setError(message) {
    error.hidden = !message;
    error.textContent = message || "";
    if (message) {
      control.setAttribute("aria-invalid", "true");
      control.setAttribute("aria-describedby", errorId);
    } else {
      control.removeAttribute("aria-invalid");
      control.removeAttribute("aria-describedby");
    }
  }
  return { element, control, setError };
}
