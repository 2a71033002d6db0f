// What the signed-in user may do, decided by the API's own permissions: the roles of `GET me`
// and the roles of each permission in `GET permissions.listAll`. Each rule below is the check
// the route makes (department_routes.py, user_routes.py); a control the user may not use is
// not drawn at all.

import { request } from "./api.js";

/** The capabilities of a user with `roles`, given [{_id, roles}] from permissions.listAll. */
export function capabilities(roles, permissionList) {
  const mine = new Set(roles);
  const granted = new Set(
    permissionList.filter((permission) => permission.roles.some((role) => mine.has(role))).map((p) => p._id),
  );
  const any = (...ids) => ids.some((id) => granted.has(id));
  return {
    // GET livechat/department, departments/archived, department/:_id
    viewDepartments: any("view-livechat-departments", "view-l-room"),
    // GET department/:_id answers its agents only to these callers
    viewDepartmentAgents: any("view-livechat-departments"),
    // POST department, PUT department (its fields), archive, unarchive
    manageDepartments: any("manage-livechat-departments"),
    // PUT department's `agents` are dropped without it; POST department/:_id/agents
    editDepartmentAgents: any("add-livechat-department-agents"),
    // DELETE department/:_id
    deleteDepartments: any("manage-livechat-departments", "remove-livechat-department"),
    // GET livechat/users/agent (also the agent search of the department form)
    listAgents: any("transfer-livechat-guest", "edit-omnichannel-contact"),
    // GET livechat/users/manager
    listManagers: any("view-livechat-manager"),
    // POST and DELETE livechat/users/agent|manager
    changeRoles: any("view-livechat-manager"),
    // GET ext/v1/livechat/department/:_id/history (event_routes.py)
    viewHistory: any("view-livechat-department-history"),
  };
}

/** Load the capabilities of the signed-in user (`roles` from login's `me`, or from GET me). */
export async function loadCapabilities(roles) {
  const listed = await request("GET", "permissions.listAll");
  return capabilities(roles, listed.update || []);
}
