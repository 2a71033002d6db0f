// The sign-in form: on the page when nobody is signed in, and in a dialog over the page when
// a token stops working (expired or revoked), so that the open page and what was typed in it
// stay as they were.

import { ApiFailure, login } from "./api.js";
import { h, uid } from "./dom.js";
import { t } from "./messages.js";
import { field } from "./widgets.js";

/** A sign-in form; `signedIn(data)` gets login's {userId, authToken, me}. */
export function signInForm(signedIn, { headingLevel = "h1", title = t("signInTitle"), intro = null } = {}) {
  const titleId = uid("signin-title");
  const user = field(t("signInUser"), h("input", { type: "text", name: "username", autocomplete: "username", spellcheck: "false", autocapitalize: "none" }));
  const password = field(t("signInPassword"), h("input", { type: "password", name: "password", autocomplete: "current-password" }));
  const problem = h("p", { class: "form-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "primary" }, t("signInSubmit"));
  const form = h(
    "form",
    { class: "signin", novalidate: true, "aria-labelledby": titleId, onsubmit: (event) => { event.preventDefault(); send(); } },
    h(headingLevel, { id: titleId, tabindex: "-1" }, title),
    intro ? h("p", {}, intro) : null,
    problem,
    user.element,
    password.element,
    h("div", { class: "actions" }, submit),
  );
  async function send() {
    problem.hidden = true;
    submit.disabled = true;
    try {
      const data = await login(user.control.value.trim(), password.control.value);
      password.control.value = "";
      await signedIn(data);
    } catch (error) {
      problem.hidden = false;
      problem.textContent = describe(error);
      password.control.focus();
    } finally {
      submit.disabled = false;
    }
  }
  return { form, focus: () => user.control.focus() };
}

function describe(error) {
  if (!(error instanceof ApiFailure)) return String(error.message || error);
  if (error.status === 0) return t("networkError");
  if (error.status === 401) return t("signInFailed");
  if (error.status === 429) return t("signInThrottled", { seconds: error.retryAfter ?? "" });
  return error.body.error || t("serverError", { status: error.status });
}

/** The dialog shown over the page on a 401; resolves with login's data once signed in. */
export function signInDialog() {
  return new Promise((resolve) => {
    let done = false;
    const { form, focus } = signInForm(
      async (data) => {
        done = true;
        dialog.close();
        dialog.remove();
        resolve(data);
      },
      { headingLevel: "h2", title: t("signInAgainTitle"), intro: t("signInAgainIntro") },
    );
    const dialog = h("dialog", { class: "signin-dialog", "aria-labelledby": form.getAttribute("aria-labelledby") }, form);
    // Escape would leave the page without a session: the dialog stays until signed in.
    // (Chromium lets a page refuse Escape only once per user gesture: shown again if it closed.)
    dialog.addEventListener("cancel", (event) => event.preventDefault());
    dialog.addEventListener("close", () => {
      if (!done) dialog.showModal();
    });
    document.body.append(dialog);
    dialog.showModal();
    focus();
  });
}
