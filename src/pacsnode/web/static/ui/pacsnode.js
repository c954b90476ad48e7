/* pacsnode web UI: what htmx does not do itself. Uploads go to STOW-RS one file at a
   time (so each has its own result), with the session's CSRF token; the de-identified
   export to the REST API, whose ZIP the browser then saves. An action's error
   answered as a page's one-line message (400, 404, 409...) shows where its success
   would; other errors (403 for a role, 401 after a logout) show in the flash area. */
"use strict";
const pacsnode = (() => {
  const csrf = () => document.body.dataset.csrf;

  function flash(text) {
    const box = document.getElementById("flash");
    if (!box) return;
    const p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = text;
    box.replaceChildren(p);
  }

  document.addEventListener("htmx:beforeSwap", (event) => {
    const xhr = event.detail.xhr;
    if (xhr.status >= 400 && (xhr.getResponseHeader("Content-Type") || "").startsWith("text/html")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:responseError", (event) => {
    const xhr = event.detail.xhr;
    let text = xhr.responseText;
    try { text = JSON.parse(text).error || text; } catch (_) { /* plain text */ }
    flash(`${xhr.status}: ${text}`);
  });
  document.addEventListener("htmx:sendError", () => flash("the archive cannot be reached"));

  function editRemote(entry) {
    const form = document.getElementById("remote-form");
    for (const name of ["ae_title", "host", "port", "description"]) form.elements[name].value = entry[name] ?? "";
    for (const name of ["offers", "allowed", "transfer_syntaxes"]) form.elements[name].value = (entry[name] || []).join(", ");
    form.elements.move_destination_only.checked = !!entry.move_destination_only;
    form.scrollIntoView();
  }

  async function filesOf(items) {
    const files = [];
    async function walk(entry, path) {
      if (entry.isFile) {
        files.push(await new Promise((ok, bad) => entry.file((f) => ok({ file: f, name: path + f.name }), bad)));
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        for (;;) {
          const batch = await new Promise((ok, bad) => reader.readEntries(ok, bad));
          if (!batch.length) break;
          for (const child of batch) await walk(child, path + entry.name + "/");
        }
      }
    }
    for (const item of items) {
      const entry = item.webkitGetAsEntry && item.webkitGetAsEntry();
      if (entry) await walk(entry, "");
    }
    return files;
  }

  function send(file) {
    const boundary = `pacsnode-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    const body = new Blob([
      `--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, file, `\r\n--${boundary}--\r\n`,
    ]);
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/dicom-web/studies");
      xhr.setRequestHeader("Content-Type", `multipart/related; type="application/dicom"; boundary=${boundary}`);
      xhr.setRequestHeader("Accept", "application/dicom+json");
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.onload = () => resolve({ status: xhr.status, body: xhr.responseText });
      xhr.onerror = () => resolve({ status: 0, body: "no answer" });
      xhr.send(body);
    });
  }

  function outcome(result) {
    if (result.status === 200) return ["stored", "ok"];
    let reason = result.body;
    try {
      const answer = JSON.parse(result.body);
      const failed = (answer["00081198"] || {}).Value || [];
      const code = failed.length ? ((failed[0]["00081197"] || {}).Value || [""])[0] : "";
      reason = answer.error || (code !== "" ? `failure reason ${Number(code).toString(16).toUpperCase().padStart(4, "0")}` : `status ${result.status}`);
      if (result.status === 202) return [`stored with warning: ${reason}`, "ok"];
    } catch (_) { /* not JSON */ }
    return [`not stored (${result.status}): ${reason}`, "error"];
  }

  async function upload(files) {
    const body = document.querySelector("#upload-results tbody");
    const bar = document.getElementById("upload-progress");
    const summary = document.getElementById("upload-summary");
    const total = files.reduce((sum, f) => sum + f.file.size, 0) || 1;
    let done = 0, stored = 0;
    bar.hidden = false; bar.max = total; bar.value = 0;
    for (const { file, name } of files) {
      const row = body.insertRow();
      row.insertCell().textContent = name;
      row.insertCell().textContent = `${(file.size / 1000).toFixed(1)} kB`;
      const cell = row.insertCell();
      cell.textContent = "sending…";
      const result = await send(file);
      const [text, kind] = outcome(result);
      cell.textContent = text;
      cell.className = kind;
      if (kind === "ok") stored += 1;
      done += file.size;
      bar.value = done;
      summary.textContent = `sending: ${stored} stored so far`;
    }
    summary.textContent = `${stored} of ${files.length} files stored`;
  }

  function setUpUpload() {
    const drop = document.getElementById("drop");
    if (!drop) return;
    const picked = (input) => upload([...input.files].map((f) => ({ file: f, name: f.webkitRelativePath || f.name })));
    document.getElementById("files").addEventListener("change", (e) => picked(e.target));
    document.getElementById("folder").addEventListener("change", (e) => picked(e.target));
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", async (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      upload(await filesOf([...e.dataTransfer.items]));
    });
  }

  function say(box, text, error = false, job = null) {
    const p = document.createElement("p");
    p.className = error ? "error" : "ok";
    p.setAttribute("role", error ? "alert" : "status");
    p.textContent = text;
    if (job !== null) {
      const link = document.createElement("a");
      link.href = "/jobs";
      link.textContent = `follow job ${job}`;
      p.append(" · ", link);
    }
    box.replaceChildren(p);
  }

  async function saveZip(answer, box) {
    const disposition = answer.headers.get("Content-Disposition") || "";
    const name = (/filename="([^"]+)"/.exec(disposition) || [])[1] || "export.zip";
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await answer.blob());
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    const notes = [...(answer.headers.get("Warning") || "").matchAll(/"([^"]*)"/g)].map((m) => m[1]);
    say(box, [`${name} downloaded, de-identified`, ...notes].join("; "));
  }

  /* The de-identified export is POST /api/studies/{uid}/export itself, with the
     session's CSRF token: a ZIP comes back as a file to save, a send to a remote AE
     as its job. */
  async function exportStudy(event) {
    event.preventDefault();
    const form = event.target;
    const box = document.getElementById("study-message");
    const data = new FormData(form);
    const request = { deidentify: true, options: data.getAll("options"), to: data.get("to") };
    if (request.to === "remote") request.remote = data.get("remote");
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    say(box, "exporting…");
    try {
      const answer = await fetch(`/api/studies/${encodeURIComponent(form.dataset.study)}/export`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify(request),
      });
      if (answer.status === 200) {
        await saveZip(answer, box);
      } else if (answer.status === 202) {
        const job = await answer.json();
        say(box, `job ${job.id} queued: ${job.description}`, false, job.id);
      } else {
        let text = await answer.text();
        try { text = JSON.parse(text).error || text; } catch (_) { /* plain text */ }
        say(box, `${answer.status}: ${text}`, true);
      }
    } catch (_) {
      say(box, "the archive cannot be reached", true);
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    setUpUpload();
    const exporting = document.getElementById("export-form");
    if (exporting) exporting.addEventListener("submit", exportStudy);
  });
  return { editRemote, upload };
})();
