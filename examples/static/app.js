// The records page: lists, creates, edits and deletes records through the JSON API.
// No framework and no build step. User content only ever goes in through textContent, and each
// string of a record sits in its own <bdi>, so right-to-left text or a stray direction override
// in one string cannot reorder the rest of the line.
"use strict";

const input = document.getElementById("json-input");
const label = document.getElementById("editor-label");
const createBtn = document.getElementById("create-btn");
const saveBtn = document.getElementById("save-btn");
const cancelBtn = document.getElementById("cancel-btn");
const errorBox = document.getElementById("error");
const statusBox = document.getElementById("status");
const tbody = document.getElementById("records");
const empty = document.getElementById("empty");
let editingId = null;
let draft = ""; // the new record being typed, kept aside while another one is edited
let listing = 0; // the latest refresh(); an older one that finishes later is dropped

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// An error from the server is "status: message", the message isolated (it may quote our input).
function showError(err) {
  if (err instanceof ApiError) {
    const message = document.createElement("bdi");
    message.textContent = err.message;
    errorBox.replaceChildren(`${err.status}: `, message);
  } else {
    errorBox.textContent = err.message;
  }
  errorBox.hidden = false;
  statusBox.textContent = "";
}

function showStatus(message) {
  errorBox.hidden = true;
  statusBox.textContent = message;
}

function clearMessages() {
  errorBox.hidden = true;
  errorBox.textContent = "";
  statusBox.textContent = "";
}

// Sends the textarea's text as it is: the server validates it and says what is wrong.
async function api(method, url, body) {
  const options = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = body;
  }
  const response = await fetch(url, options);
  const payload = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, (payload && payload.error) || response.statusText);
  }
  return { payload, response };
}

// The URL of the next page, from the Link header the server sends while more records follow.
function nextPage(response) {
  const found = /<([^>]*)>\s*;\s*rel="next"/.exec(response.headers.get("Link") || "");
  return found ? new URL(found[1], response.url).href : null;
}

// The message for an empty record, or null: the server refuses one too, this just says it sooner.
function emptyRecordMessage(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    return text.trim() === "" ? "Type a record: a JSON object such as {\"name\": \"Ada\"}." : null;
  }
  const isObject = value !== null && typeof value === "object" && !Array.isArray(value);
  return isObject && Object.keys(value).length === 0 ? "A record needs at least one field." : null;
}

// JSON as text (the same text as JSON.stringify), each string in a <bdi> of its own.
function renderJson(value, into) {
  if (typeof value === "string") {
    const text = document.createElement("bdi");
    text.textContent = JSON.stringify(value);
    into.append(text);
  } else if (Array.isArray(value)) {
    into.append("[");
    value.forEach((item, i) => {
      if (i > 0) into.append(",");
      renderJson(item, into);
    });
    into.append("]");
  } else if (value !== null && typeof value === "object") {
    into.append("{");
    Object.entries(value).forEach(([key, item], i) => {
      if (i > 0) into.append(",");
      renderJson(key, into);
      into.append(":");
      renderJson(item, into);
    });
    into.append("}");
  } else {
    into.append(JSON.stringify(value));
  }
}

function renderRow(record) {
  const row = document.createElement("tr");
  row.dataset.id = record.id;
  const idCell = document.createElement("td");
  idCell.textContent = record.id;
  const dataCell = document.createElement("td");
  dataCell.className = "data";
  renderJson(record.data, dataCell);
  const actions = document.createElement("td");
  actions.className = "actions";
  const edit = document.createElement("button");
  edit.type = "button";
  edit.className = "edit-btn";
  edit.textContent = "Edit";
  edit.addEventListener("click", () => startEdit(record));
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "delete-btn";
  remove.textContent = "Delete";
  remove.addEventListener("click", () => deleteRecord(record.id));
  actions.append(edit, " ", remove);
  row.append(idCell, dataCell, actions);
  return row;
}

// Lists every record, page after page, and shows them together once all have come.
async function refresh() {
  const turn = ++listing;
  try {
    const rows = [];
    let url = "/data";
    while (url !== null) {
      const { payload, response } = await api("GET", url);
      rows.push(...payload.map(renderRow));
      url = nextPage(response);
    }
    if (turn !== listing) return;
    tbody.replaceChildren(...rows);
    empty.hidden = rows.length > 0;
  } catch (err) {
    if (turn === listing) showError(err);
  }
}

// A write that fails may still tell us the list has changed (a 404: someone deleted the
// record): show the error, then the list as the server has it.
async function write(action) {
  try {
    await action();
  } catch (err) {
    showError(err);
  }
  await refresh();
}

function createRecord() {
  const problem = emptyRecordMessage(input.value);
  if (problem) {
    showError(new Error(problem));
    return;
  }
  return write(async () => {
    const { payload } = await api("POST", "/data", input.value);
    showStatus(`Created record ${payload.id}.`);
  });
}

function startEdit(record) {
  if (editingId === null) draft = input.value;
  clearMessages(); // an old message is not about this record
  editingId = record.id;
  input.value = JSON.stringify(record.data, null, 2);
  label.textContent = `Editing record ${record.id}`;
  createBtn.hidden = true;
  saveBtn.hidden = false;
  cancelBtn.hidden = false;
  input.focus();
}

function stopEdit() {
  editingId = null;
  input.value = draft; // back to the new record as it was before Edit
  label.textContent = "New record (a JSON object)";
  createBtn.hidden = false;
  saveBtn.hidden = true;
  cancelBtn.hidden = true;
}

function saveRecord() {
  const problem = emptyRecordMessage(input.value);
  if (problem) {
    showError(new Error(problem));
    return;
  }
  return write(async () => {
    const { payload } = await api("PUT", `/data/${editingId}`, input.value);
    showStatus(`Saved record ${payload.id}.`);
    stopEdit();
  });
}

function deleteRecord(id) {
  if (!window.confirm(`Delete record ${id}?`)) return;
  return write(async () => {
    await api("DELETE", `/data/${id}`);
    showStatus(`Deleted record ${id}.`);
    if (editingId === id) stopEdit();
  });
}

createBtn.addEventListener("click", createRecord);
saveBtn.addEventListener("click", saveRecord);
cancelBtn.addEventListener("click", () => {
  clearMessages();
  stopEdit();
});
refresh();
