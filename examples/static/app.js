// The records page: lists, creates, edits and deletes records through the JSON API.
// No framework and no build step; errors from the server are shown as they come.
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

function showError(message) {
  errorBox.textContent = message;
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

// Send the textarea's text as it is: the server validates it and says what is wrong.
async function api(method, url, body) {
  const options = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = body;
  }
  const response = await fetch(url, options);
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    throw new Error(`${response.status}: ${payload.error || response.statusText}`);
  }
  return payload;
}

function renderRow(record) {
  const row = document.createElement("tr");
  row.dataset.id = record.id;
  const idCell = document.createElement("td");
  idCell.textContent = record.id;
  const dataCell = document.createElement("td");
  dataCell.className = "data";
  dataCell.textContent = JSON.stringify(record.data);
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

async function refresh() {
  try {
    const records = await api("GET", "/data?limit=1000");
    tbody.replaceChildren(...records.map(renderRow));
    empty.hidden = records.length > 0;
  } catch (err) {
    showError(err.message);
  }
}

async function createRecord() {
  try {
    const created = await api("POST", "/data", input.value);
    showStatus(`Created record ${created.id}.`);
    await refresh();
  } catch (err) {
    showError(err.message);
  }
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

async function saveRecord() {
  try {
    const saved = await api("PUT", `/data/${editingId}`, input.value);
    showStatus(`Saved record ${saved.id}.`);
    stopEdit();
    await refresh();
  } catch (err) {
    showError(err.message);
  }
}

async function deleteRecord(id) {
  try {
    await api("DELETE", `/data/${id}`);
    showStatus(`Deleted record ${id}.`);
    if (editingId === id) stopEdit();
    await refresh();
  } catch (err) {
    showError(err.message);
  }
}

createBtn.addEventListener("click", createRecord);
saveBtn.addEventListener("click", saveRecord);
cancelBtn.addEventListener("click", () => {
  clearMessages();
  stopEdit();
});
refresh();
