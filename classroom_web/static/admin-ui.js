// @ts-check
/* The admin console's building blocks: labelled fields, a form with its error line beside it,
 * busy (disabled) states, tables, a two-step confirm, a panel's "not available" state.
 * Texts are set as textContent only.
 */
import { el } from "./dom.js";

/**
 * @typedef {{value: string, label: string}} Choice
 * @typedef {{
 *   name: string, label: string,
 *   type?: "text" | "select" | "checks" | "date" | "time" | "number" | "file",
 *   required?: boolean, placeholder?: string, choices?: Choice[], pattern?: string
 * }} FieldSpec
 */

let fieldCount = 0;

/**
 * A <label> with its control (input, select, or a fieldset of checkboxes for "checks").
 * The control has name = spec.name and data-field = spec.name.
 * @param {FieldSpec} spec
 * @returns {HTMLElement}
 */
export function field(spec) {
  const id = "f" + ++fieldCount + "-" + spec.name;
  if (spec.type === "checks") {
    const box = el("fieldset", { className: "checks", "data-field": spec.name });
    box.appendChild(el("legend", null, spec.label));
    setChecks(box, spec.choices || []);
    return box;
  }
  const wrap = el("div", { className: "field" });
  wrap.appendChild(el("label", { for: id }, spec.label));
  /** @type {HTMLInputElement | HTMLSelectElement} */
  let control;
  if (spec.type === "select") {
    control = el("select", { id, name: spec.name, "data-field": spec.name });
    setChoices(control, spec.choices || []);
  } else {
    control = el("input", { id, name: spec.name, "data-field": spec.name, type: spec.type || "text" });
    if (spec.placeholder) {
      control.placeholder = spec.placeholder;
    }
    if (spec.pattern) {
      control.pattern = spec.pattern;
    }
  }
  control.required = !!spec.required;
  wrap.appendChild(control);
  return wrap;
}

/**
 * Replace a select's options, keeping its value when it is still offered.
 * @param {HTMLSelectElement} select @param {Choice[]} choices
 */
export function setChoices(select, choices) {
  const keep = select.value;
  select.textContent = "";
  choices.forEach((c) => select.appendChild(el("option", { value: c.value }, c.label)));
  if (choices.some((c) => c.value === keep)) {
    select.value = keep;
  }
}

/**
 * Replace a "checks" fieldset's boxes, keeping the ticked ones still offered.
 * @param {HTMLElement} box @param {Choice[]} choices
 */
export function setChecks(box, choices) {
  const ticked = new Set(checked(box));
  box.querySelectorAll(".check").forEach((n) => n.remove());
  choices.forEach((c) => {
    const label = el("label", { className: "check" });
    const input = el("input", { type: "checkbox", value: c.value });
    input.checked = ticked.has(c.value);
    label.appendChild(input);
    label.appendChild(document.createTextNode(" " + c.label));
    box.appendChild(label);
  });
}

/** The ticked values of a "checks" fieldset. @param {Element} box @returns {string[]} */
export function checked(box) {
  return Array.from(box.querySelectorAll("input[type=checkbox]"))
    .filter((n) => n instanceof HTMLInputElement && n.checked)
    .map((n) => /** @type {HTMLInputElement} */ (n).value);
}

/**
 * The control named `name` in `form` (input or select).
 * @param {HTMLElement} form @param {string} name
 * @returns {HTMLInputElement & HTMLSelectElement}
 */
export function control(form, name) {
  const node = form.querySelector(`[data-field="${name}"]`);
  if (!node) {
    throw new Error("admin form: no field " + name);
  }
  return /** @type {any} */ (node);
}

/**
 * A <form> with a heading, fields, a submit button and an error line (role=alert) beside the
 * buttons. `onSubmit` returns a promise: while it runs the buttons are disabled and the
 * form is aria-busy; a rejection's message goes on the error line.
 * @param {{title: string, fields: FieldSpec[], submit: string, action: string,
 *          onSubmit: (form: HTMLFormElement) => Promise<unknown>, extra?: HTMLElement[]}} spec
 * @returns {HTMLFormElement}
 */
export function form(spec) {
  const node = el("form", { className: "admin-form", "data-form": spec.action, novalidate: "" });
  node.appendChild(el("h3", null, spec.title));
  const grid = el("div", { className: "fields" });
  spec.fields.forEach((f) => grid.appendChild(field(f)));
  node.appendChild(grid);
  const row = el("div", { className: "buttons" });
  row.appendChild(el("button", { type: "submit", "data-action": spec.action }, spec.submit));
  (spec.extra || []).forEach((b) => row.appendChild(b));
  node.appendChild(row);
  const error = el("p", { className: "form-error", role: "alert", "data-error": spec.action });
  node.appendChild(error);
  node.addEventListener("submit", (e) => {
    e.preventDefault();
    run(node, () => spec.onSubmit(node));
  });
  return node;
}

/**
 * Run `job` with `box`'s buttons disabled (aria-busy), its error line cleared first and set
 * to the rejection's message (or what `describe` makes of the error) after.
 * @param {HTMLElement} box @param {() => Promise<unknown>} job
 * @param {(err: any) => string | Node} [describe]
 * @returns {Promise<boolean>} true when the job succeeded
 */
export function run(box, job, describe) {
  const error = box.querySelector(".form-error");
  if (error) {
    error.textContent = "";
  }
  busy(box, true);
  return Promise.resolve()
    .then(job)
    .then(() => true, (err) => {
      if (error) {
        const text = describe ? describe(err) : err.message || String(err);
        error.textContent = "";
        error.appendChild(typeof text === "string" ? document.createTextNode(text) : text);
      }
      return false;
    })
    .finally(() => busy(box, false));
}

/**
 * Disable (or re-enable) every button of `box`; a button with data-locked stays disabled.
 * @param {HTMLElement} box @param {boolean} on
 */
export function busy(box, on) {
  box.setAttribute("aria-busy", on ? "true" : "false");
  box.querySelectorAll("button").forEach((b) => {
    b.disabled = on || b.hasAttribute("data-locked");
  });
}

/**
 * A <table> of rows: each column a header and a cell maker (text or a node).
 * @template R
 * @param {{head: string, cell: (row: R) => string | number | Node | null}[]} columns
 * @param {R[]} rows
 * @param {string} empty text for no rows
 * @param {(row: R) => Record<string, string>} [attrs] attributes of each <tr>
 * @returns {HTMLTableElement}
 */
export function table(columns, rows, empty, attrs) {
  const node = el("table", { className: "grid-table" });
  const head = node.createTHead().insertRow();
  columns.forEach((c) => head.appendChild(el("th", { scope: "col" }, c.head)));
  const body = node.createTBody();
  if (!rows.length) {
    const tr = body.insertRow();
    tr.appendChild(el("td", { colspan: columns.length, className: "empty" }, empty));
  }
  rows.forEach((row) => {
    const tr = body.insertRow();
    Object.entries(attrs ? attrs(row) : {}).forEach(([k, v]) => tr.setAttribute(k, v));
    columns.forEach((c) => {
      const td = tr.insertCell();
      const value = c.cell(row);
      if (value instanceof Node) {
        td.appendChild(value);
      } else if (value !== null && value !== undefined) {
        td.textContent = String(value);
      }
    });
  });
  return node;
}

/**
 * A button that asks once more before acting: the first press shows "confirm" and "cancel"
 * in its place; confirm runs `act`.
 * @param {{label: string, confirm: string, cancel: string, action: string,
 *          act: () => void}} spec
 * @returns {HTMLElement}
 */
export function confirmButton(spec) {
  const box = el("span", { className: "confirm" });
  const first = el("button", { type: "button", className: "danger", "data-action": spec.action }, spec.label);
  const yes = el("button", { type: "button", className: "danger", "data-action": "confirm-" + spec.action }, spec.confirm);
  const no = el("button", { type: "button", "data-action": "cancel-" + spec.action }, spec.cancel);
  const show = (/** @type {boolean} */ asking) => {
    first.hidden = asking;
    yes.hidden = !asking;
    no.hidden = !asking;
  };
  show(false);
  first.onclick = () => show(true);
  no.onclick = () => show(false);
  yes.onclick = () => {
    show(false);
    spec.act();
  };
  box.append(first, yes, no);
  return box;
}

/**
 * A panel's "not available on this server" state (its API is missing), or a load failure.
 * @param {HTMLElement} panel @param {string} text
 */
export function unavailable(panel, text) {
  panel.textContent = "";
  panel.appendChild(el("p", { className: "unavailable", role: "note", "data-unavailable": "" }, text));
}

/** A section heading with optional side controls. @param {string} text @param {...Node} side */
export function heading(text, ...side) {
  const row = el("div", { className: "section-head" });
  row.appendChild(el("h2", null, text));
  side.forEach((n) => row.appendChild(n));
  return row;
}
