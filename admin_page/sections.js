// The page's sections, in one place: the top navigation and the tabs of one department.
// A section is shown only when `visible(can)` says the user's permissions allow it. Adding
// a section (for example a department's change history) is one entry in a list below, with
// its `render` module; the router, navigation and tabs follow from these lists.

import { prefetchDepartmentList, renderDepartmentDetails, renderDepartmentList } from "./departments.js";
import { renderDepartmentHistory } from "./history.js";
import { renderPeople } from "./people.js";

/**
 * The tabs of one department page, `#/departments/<id>/<tab>` (the first is the default).
 * The tab list is drawn only when more than one tab is visible.
 */
export const DEPARTMENT_TABS = [
  { id: "details", label: "tabDetails", visible: () => true, render: renderDepartmentDetails },
  { id: "history", label: "tabHistory", visible: (can) => can.viewHistory, render: renderDepartmentHistory },
];

/**
 * Top navigation: `#/<id>…` routes. `render(main, ctx, rest)` draws `#/<id>/<rest…>`; a section
 * with `itemTabs` draws `#/<id>/<item id>/<tab>` as that item's tabs instead, except for the
 * list views it names in `listViews`. `prefetch(rest)`, if any, starts the first request of
 * `render` while the permissions load after sign-in (the first section is the default).
 */
export const SECTIONS = [
  {
    id: "departments",
    label: "sectionDepartments",
    visible: (can) => can.viewDepartments,
    render: renderDepartmentList,
    prefetch: prefetchDepartmentList,
    listViews: ["archived"],
    itemTabs: DEPARTMENT_TABS,
    itemLabel: "departmentSections",
  },
  { id: "agents", label: "sectionAgents", visible: (can) => can.listAgents, render: renderPeople("agent") },
  { id: "managers", label: "sectionManagers", visible: (can) => can.listManagers, render: renderPeople("manager") },
];

