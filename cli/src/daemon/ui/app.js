// The status page's controller: sign-in, the live status stream (reconnecting when it drops),
// and the actions (changeovers, collision resolutions), each behind a confirmation that says
// what will happen. Lists that are not in the stream (revisions, collisions) are fetched again
// when the stream shows that they changed; the domain list, whose heads the global domain's
// stream does not carry, with the samples, at most twice a second.
"use strict";

const $ = (id) => document.getElementById(id);

/** How long to wait before opening the stream again after it dropped. */
const RECONNECT_MS = 1000;
/** Revisions listed. */
const REVISIONS_SHOWN = 10;
/**
 * The domain list is fetched at most this often: the samples of a busy Active (up to ten a
 * second) ask the node for it no more often than the stream's own pace.
 */
const DOMAINS_EVERY_MS = 500;
/** Objects fetched to resolve uids to names. */
const NAMES_LIMIT = 100000;

const page = {
  stream: null, // the AbortController of the open stream
  last: null, // the last status sample
  revisionsSeq: -1, // the head the revision list shows
  collisionsKey: "", // what the collision list was fetched for
  names: null, // Map uid -> "type name", for the head `namesSeq`
  namesSeq: -1,
  busy: false, // an action is running
  domains: null, // the last domain list (`DomainList.domains`)
  domainsKey: "", // what the domain table was drawn from
  domain: null, // the name of the selected domain
  domainSeq: -1, // the head of the selected domain its revision list shows
  domainNames: null, // { key, map }: uid -> "type name" for the selected domain at a head
};

/** Where one domain's routes are: every `/v1/…` route of it is under this prefix. */
function domainPath(name) {
  return `/v1/domains/${encodeURIComponent(name)}`;
}

/** Where each action's outcome is shown: the Actions panel, or the selected domain's. */
const ACTIONS_OUT = { result: "action-result", error: "action-error" };
const DOMAIN_OUT = { result: "domain-action-result", error: "domain-action-error" };

// -- sign-in ----------------------------------------------------------------------------------

function showLogin(message) {
  if (page.stream) {
    page.stream.abort();
    page.stream = null;
  }
  $("main").hidden = true;
  $("live").hidden = true;
  $("sign-out").hidden = true;
  $("node-title").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

async function signIn(token) {
  api.setToken(token);
  try {
    await api.get("/v1/status");
  } catch (e) {
    api.forget();
    showLogin(e.status === 401 ? `Not signed in: ${e.message}` : `The daemon refused: ${describeError(e)}`);
    return;
  }
  $("login").hidden = true;
  $("main").hidden = false;
  $("sign-out").hidden = false;
  $("live").hidden = false;
  connect();
}

// -- the live stream --------------------------------------------------------------------------

function setLive(state, text) {
  const live = $("live");
  live.className = `live ${state}`;
  live.textContent = text;
}

async function connect() {
  const controller = new AbortController();
  page.stream = controller;
  setLive("connecting", "Connecting…");
  while (page.stream === controller) {
    try {
      await api.stream(controller.signal, () => setLive("ok", "● Live"), (name, data) => {
        if (name === "status") {
          onSample(JSON.parse(data));
        } else if (name === "error") {
          setLive("bad", `Status unavailable: ${data}`);
        }
      });
      if (page.stream !== controller) {
        return;
      }
      setLive("bad", "✕ The stream ended; reconnecting…");
    } catch (e) {
      if (page.stream !== controller) {
        return;
      }
      if (e instanceof ApiError && e.status === 401) {
        api.forget();
        showLogin(`Signed out: ${e.message}`);
        return;
      }
      setLive("bad", `✕ Connection lost; reconnecting… (${e.message})`);
    }
    await new Promise((r) => setTimeout(r, RECONNECT_MS));
  }
}

function onSample(sample) {
  page.last = sample;
  const s = sample.status;
  const title = $("node-title");
  title.hidden = false;
  title.textContent = `Node ${s.node.name}: ${s.node.role}, epoch ${epochText(s.node.epoch)}, revision ${s.head.seq}`;
  views.health($("health"), $("health-body"), s);
  views.servers($("servers").tBodies[0], sample);
  views.arbiter($("arbiter"), s);
  charts.record(sample);
  charts.draw($("charts"), sample);
  updateActions(s);
  refreshDomains();
  if (s.head.seq !== page.revisionsSeq) {
    page.revisionsSeq = s.head.seq;
    refreshRevisions();
  }
  const key = `${s.collisions_open}/${s.head.seq}/${s.node.role}`;
  if (key !== page.collisionsKey) {
    page.collisionsKey = key;
    refreshCollisions();
  }
}

// -- lists ------------------------------------------------------------------------------------

/**
 * `load` run now, or once more after the run in flight: a burst of samples on a busy Active
 * costs a request at a time, never a backlog of them.
 */
function coalesced(load) {
  let running = false;
  let again = false;
  return async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        await load();
      } while (again);
    } finally {
      running = false;
    }
  };
}

const refreshRevisions = coalesced(() => loadRevisions());
const refreshCollisions = coalesced(() => loadCollisions());
const refreshDomains = coalesced(async () => {
  const started = Date.now();
  await loadDomains();
  const left = DOMAINS_EVERY_MS - (Date.now() - started);
  if (left > 0) {
    await new Promise((r) => setTimeout(r, left));
  }
});
const refreshDomainRevisions = coalesced(() => loadDomainRevisions());

async function loadRevisions() {
  try {
    const list = await api.get(`/v1/revisions?limit=${REVISIONS_SHOWN}`);
    views.revisions($("revisions").tBodies[0], list.revisions, showDiff);
    const from = $("diff-from");
    const to = $("diff-to");
    if (from.value === "" && to.value === "" && list.revisions.length > 0) {
      to.value = list.revisions[0].seq;
      from.value = Math.max(0, list.revisions[0].seq - 1);
    }
  } catch (e) {
    $("diff-error").textContent = `Revisions unavailable: ${describeError(e)}`;
  }
}

async function loadCollisions() {
  try {
    const list = await api.get("/v1/collisions");
    views.collisions($("collisions"), list.collisions, { diff: showCollisionDiff, resolve: resolveCollision });
  } catch (e) {
    const text = `Collisions unavailable: ${describeError(e)}`;
    $("collisions").replaceChildren(el("p", { class: "error", role: "alert", text }));
  }
}

async function loadDomains() {
  let list;
  try {
    list = (await api.get("/v1/domains")).domains;
  } catch (e) {
    page.domains = null;
    page.domainsKey = "";
    $("domains").hidden = true;
    $("domain-detail").hidden = true;
    $("domains-hint").textContent = "";
    $("domains-error").textContent = `Domains unavailable: ${describeError(e)}`;
    return;
  }
  $("domains-error").textContent = "";
  showDomains(list);
}

/**
 * Draws the domain list (again only when it changed, keeping the focus on the domain button
 * that had it), and the selected domain: its changeover, and its revisions when its head moved.
 */
function showDomains(list) {
  page.domains = list;
  const several = list.length > 1;
  if (page.domain !== null && (!several || !list.some((d) => d.name === page.domain))) {
    // Deleted, or the global domain is left alone: the table that selects is gone.
    selectDomain(null);
  }
  const key = `${page.domain}\n${JSON.stringify(list)}`;
  if (key !== page.domainsKey) {
    page.domainsKey = key;
    const focused = document.activeElement && document.activeElement.closest("#domains tr[data-domain]");
    const tbody = $("domains").tBodies[0];
    const me = page.last ? page.last.status.node.name : "";
    views.domains(tbody, several ? list : [], page.domain, me, selectDomain);
    if (focused) {
      const again = tbody.querySelector(`tr[data-domain="${CSS.escape(focused.dataset.domain)}"] button`);
      if (again) {
        again.focus();
      }
    }
  }
  $("domains").hidden = !several;
  $("domains-hint").textContent = several
    ? `${list.length} domains, each its own database with its own Active. Select one to see its revisions.`
    : "One domain: global, the whole configuration of this cluster, shown by the panels below. " +
      "`mgha domain create` adds more (docs/domains.md).";
  const chosen = list.find((d) => d.name === page.domain);
  $("domain-detail").hidden = !chosen;
  if (!chosen) {
    return;
  }
  updateDomainActions(chosen);
  $("domain-revisions").hidden = !chosen.here;
  if (chosen.here && chosen.head_seq !== page.domainSeq) {
    page.domainSeq = chosen.head_seq;
    refreshDomainRevisions();
  }
}

/** Selects domain `name` (or none; selecting the selected one again closes it). */
function selectDomain(name) {
  page.domain = name === page.domain ? null : name;
  page.domainSeq = -1;
  page.domainNames = null;
  $("domain-revisions").tBodies[0].replaceChildren();
  $("domain-diff").replaceChildren();
  $("domain-diff-error").textContent = "";
  $("domain-action-result").textContent = "";
  $("domain-action-error").replaceChildren();
  if (page.domain !== null) {
    $("domain-detail-title").textContent = `Domain ${page.domain}`;
    $("domain-revisions-caption").textContent = `The latest revisions of domain ${page.domain}, newest first`;
    $("domain-planned-label").textContent = `Planned changeover of ${page.domain} to`;
  }
  page.domainsKey = "";
  if (page.domains) {
    showDomains(page.domains);
  }
}

async function loadDomainRevisions() {
  const name = page.domain;
  if (name === null) {
    return;
  }
  try {
    const list = await api.get(`${domainPath(name)}/revisions?limit=${REVISIONS_SHOWN}`);
    if (page.domain === name) {
      views.revisions($("domain-revisions").tBodies[0], list.revisions, (from, to) => showDomainDiff(name, from, to));
    }
  } catch (e) {
    if (page.domain === name) {
      $("domain-diff-error").textContent = `Revisions of ${name} unavailable: ${describeError(e)}`;
    }
  }
}

/**
 * uid -> "type name" of a domain's objects and of the global ones (which its objects may
 * reference), fetched once per head of both.
 */
async function domainNames(name) {
  const d = page.domains && page.domains.find((x) => x.name === name);
  const key = `${name}/${d ? d.head_seq : ""}/${page.last ? page.last.status.head.seq : ""}`;
  if (page.domainNames === null || page.domainNames.key !== key) {
    const [own, global] = await Promise.all([api.get(`${domainPath(name)}/objects?limit=${NAMES_LIMIT}`), names()]);
    const map = new Map(global);
    for (const o of own.objects) {
      map.set(o.uid.toLowerCase(), `${o.type} ${o.name}`);
    }
    page.domainNames = { key, map };
  }
  return page.domainNames.map;
}

async function showDomainDiff(name, from, to) {
  $("domain-diff-error").textContent = "";
  try {
    const [diff, known] = await Promise.all([api.get(`${domainPath(name)}/diff?from=${from}&to=${to}`), domainNames(name)]);
    if (page.domain !== name) {
      return;
    }
    $("domain-diff").replaceChildren(
      el("h4", { text: `Diff of ${name} from revision ${from} to revision ${to}` }),
      views.objectDiffs(diff.objects, withDiffNames(known, diff.objects), "No object differs.")
    );
  } catch (e) {
    $("domain-diff").replaceChildren();
    $("domain-diff-error").textContent = `No diff: ${describeError(e)}`;
  }
}

/** uid -> "type name" of every object at the current head, fetched once per head. */
async function names() {
  const seq = page.last ? page.last.status.head.seq : 0;
  if (page.names === null || page.namesSeq !== seq) {
    const list = await api.get(`/v1/objects?limit=${NAMES_LIMIT}`);
    page.names = new Map(list.objects.map((o) => [o.uid.toLowerCase(), `${o.type} ${o.name}`]));
    page.namesSeq = seq;
  }
  return page.names;
}

/** Names of the objects a diff lists itself, which covers objects deleted since. */
function withDiffNames(map, objects) {
  const out = new Map(map);
  for (const o of objects) {
    if (!out.has(o.uid.toLowerCase())) {
      out.set(o.uid.toLowerCase(), `${o.type} ${o.name}`);
    }
  }
  return out;
}

async function showDiff(from, to) {
  $("diff-from").value = from;
  $("diff-to").value = to;
  $("diff-error").textContent = "";
  try {
    const [diff, known] = await Promise.all([api.get(`/v1/diff?from=${from}&to=${to}`), names()]);
    const map = withDiffNames(known, diff.objects);
    $("diff").replaceChildren(
      el("h3", { id: "diff-title", text: `Diff from revision ${from} to revision ${to}` }),
      views.objectDiffs(diff.objects, map, "No object differs.")
    );
  } catch (e) {
    $("diff").replaceChildren();
    $("diff-error").textContent = `No diff: ${describeError(e)}`;
  }
}

async function showCollisionDiff(branch, item) {
  const old = item.querySelector(".collision-diff");
  try {
    const [diff, known] = await Promise.all([api.get(`/v1/collisions/${branch.id}/diff`), names()]);
    const map = withDiffNames(known, diff.branch_changes.concat(diff.active_changes));
    const view = views.collisionDiff(diff, map);
    if (old) {
      old.replaceWith(view);
    } else {
      item.append(view);
    }
  } catch (e) {
    showError(`No diff of branch ${branch.id}`, e);
  }
}

// -- actions ----------------------------------------------------------------------------------

/**
 * Gives `select` the options `names`, only when they changed (a refresh must not close an open
 * list), and keeps the chosen one while it is still offered.
 */
function setOptions(select, names) {
  const current = Array.from(select.options).map((o) => o.value);
  if (current.join("\n") === names.join("\n")) {
    return;
  }
  const chosen = select.value;
  select.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
  if (names.includes(chosen)) {
    select.value = chosen;
  }
}

function updateActions(s) {
  const candidates = s.node.role === "active"
    ? s.peers.map((p) => p.name)
    : [s.node.name].concat(s.peers.filter((p) => p.role !== "active").map((p) => p.name));
  setOptions($("planned-target"), candidates);
  $("planned").disabled = page.busy || candidates.length === 0;
  $("planned-hint").textContent = candidates.length === 0
    ? "No Standby to hand over to."
    : `The Active${s.active ? ` (${s.active})` : s.node.role === "active" ? ` (${s.node.name})` : ""} stops taking ` +
      "publishes, brings the chosen Standby to its head, and hands the Active role over. No revision is lost.";
  const standby = s.node.role !== "active";
  $("forced").disabled = page.busy || !standby;
  $("forced-hint").textContent = standby
    ? "Only when the Active is unreachable: this node becomes the Active at once, without asking it."
    : "Only a Standby can be forced Active; open this page on a Standby for that.";
}

/**
 * The selected domain's planned changeover: offered when this server holds a replica that can
 * hand over (an Active with other replicas) or take over (a Standby), as the Actions panel
 * offers the global domain's.
 */
function updateDomainActions(d) {
  const me = page.last ? page.last.status.node.name : "";
  const peers = d.peers || [];
  const candidates = !d.here ? []
    : d.role === "active" ? byName(peers).map((p) => p.name)
      : [me].concat(byName(peers).filter((p) => p.role !== "active").map((p) => p.name));
  setOptions($("domain-planned-target"), candidates);
  $("domain-planned-form").hidden = candidates.length === 0;
  $("domain-planned").disabled = page.busy;
  $("domain-planned-hint").textContent = !d.here
    ? `This server holds no replica of ${d.name}: open this page on ${d.replicas.join(" or ")} to see its ` +
      "revisions and change it over."
    : candidates.length === 0
      ? `No other replica of ${d.name} to hand over to: only ${d.replicas.join(", ")} holds it.`
      : `The Active of ${d.name}${d.active ? ` (${d.active})` : ""} stops taking publishes to it, brings the ` +
        "chosen replica to its head, and hands the Active role over. No revision is lost; other domains are not touched.";
}

/** The buttons of every action, enabled or not as `page.busy` says. */
function updateAllActions() {
  if (page.last) {
    updateActions(page.last.status);
  }
  const chosen = page.domains && page.domains.find((d) => d.name === page.domain);
  if (chosen) {
    updateDomainActions(chosen);
  }
}

function showError(what, e, out) {
  const to = out || ACTIONS_OUT;
  $(to.result).textContent = "";
  $(to.error).replaceChildren(
    el("p", {}, el("strong", { text: `${what}. ` }), "The API answered: ",
      el("code", { class: "api-error", text: describeError(e) }))
  );
}

/**
 * Runs one action, with the page's buttons disabled meanwhile; shows its result or refusal
 * where `out` says (the Actions panel by default).
 */
async function act(running, what, call, done, out) {
  const to = out || ACTIONS_OUT;
  page.busy = true;
  updateAllActions();
  $(to.error).replaceChildren();
  $(to.result).textContent = running;
  try {
    const result = await call();
    $(to.result).textContent = done(result);
  } catch (e) {
    showError(what, e, to);
  } finally {
    page.busy = false;
    updateAllActions();
    page.collisionsKey = "";
  }
}

/** Asks in a modal dialog; resolves to whether the administrator confirmed. */
function confirmAction(title, paragraphs, yesText, danger) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-body").replaceChildren(...paragraphs.map((p) => el("p", { text: p })));
  const yes = $("confirm-yes");
  yes.textContent = yesText;
  yes.className = danger ? "danger" : "";
  return new Promise((resolve) => {
    const finish = (answer) => {
      yes.onclick = null;
      $("confirm-no").onclick = null;
      dialog.onclose = null;
      if (dialog.open) {
        dialog.close();
      }
      resolve(answer);
    };
    yes.onclick = () => finish(true);
    $("confirm-no").onclick = () => finish(false);
    dialog.onclose = () => finish(false);
    dialog.showModal();
    $("confirm-no").focus();
  });
}

async function plannedChangeover(event) {
  event.preventDefault();
  const to = $("planned-target").value;
  const s = page.last && page.last.status;
  if (!to || !s) {
    return;
  }
  const active = s.node.role === "active" ? s.node.name : s.active || "the Active";
  const ok = await confirmAction(`Planned changeover to ${to}`, [
    `${active} stops taking publishes, brings ${to} to its head, then ${to} becomes the Active at the next ` +
      `epoch and ${active} follows it as a Standby.`,
    "Publishes are refused for the moment of the handover; none is lost. If the changeover cannot finish in " +
      "time, it is called off and nothing changes.",
  ], `Change over to ${to}`, false);
  if (!ok) {
    return;
  }
  await act(`Changeover to ${to} running…`, `No changeover to ${to}`, () => api.post("/v1/changeover", { to }),
    (r) => `Done: ${r.active} is the Active at epoch ${epochText(r.epoch)} (took ${r.took_ms} ms).`);
}

async function domainChangeover(event) {
  event.preventDefault();
  const name = page.domain;
  const to = $("domain-planned-target").value;
  const d = page.domains && page.domains.find((x) => x.name === name);
  if (!d || !to) {
    return;
  }
  const active = d.active || `the Active of ${name}`;
  const ok = await confirmAction(`Planned changeover of ${name} to ${to}`, [
    `${active} stops taking publishes to ${name}, brings the replica on ${to} to its head, then ${to} becomes ` +
      `the Active of ${name} at its next epoch and ${active} follows it as a Standby.`,
    `Publishes to ${name} are refused for the moment of the handover; none is lost. If the changeover cannot ` +
      "finish in time, it is called off and nothing changes. Other domains are not touched.",
  ], `Change ${name} over to ${to}`, false);
  if (!ok) {
    return;
  }
  await act(`Changeover of ${name} to ${to} running…`, `No changeover of ${name} to ${to}`,
    () => api.post(`${domainPath(name)}/changeover`, { to }),
    (r) => `Done: ${r.active} is the Active of ${name} at epoch ${epochText(r.epoch)} (took ${r.took_ms} ms).`,
    DOMAIN_OUT);
  refreshDomains();
}

async function forcedChangeover() {
  const s = page.last && page.last.status;
  if (!s) {
    return;
  }
  const active = s.active ? `'${s.active}'` : "the current active";
  const ok = await confirmAction(`Forced changeover on ${s.node.name}`, [
    `A forced changeover makes '${s.node.name}' the active node at the next epoch without asking ${active}.`,
    `If ${active} still runs and takes publishes, they will collide with this node's: they are kept as a ` +
      "collision branch for you to resolve. Force only when " + `${active} is unreachable.`,
  ], `Force ${s.node.name} Active`, true);
  if (!ok) {
    return;
  }
  await act("Forced changeover running…", "No forced changeover", () => api.post("/v1/changeover", { force: true }),
    (r) => `Done: ${r.active} is the Active at epoch ${epochText(r.epoch)}. Warning: ${active} was not asked. ` +
      `If it still runs, it takes publishes until it meets epoch ${epochText(r.epoch)}; what it published after ` +
      "the fork is then kept here as a collision branch.");
}

async function resolveCollision(branch, how, prefer) {
  const n = `${branch.revisions} revision${branch.revisions === 1 ? "" : "s"}`;
  const texts = {
    "keep-active": [
      `Keep the Active's state: nothing is published. The ${n} of branch ${branch.id} from ${branch.node} ` +
        "are not applied; the branch stays on record as resolved.",
    ],
    "keep-branch": [
      `Take the branch: publishes one revision that makes the configuration what ${branch.node} had at the ` +
        `branch's head (revision ${branch.head.seq}). What the Active changed since revision ${branch.fork.seq} ` +
        "is undone by that revision (history keeps it).",
    ],
    "merge": [
      `Merge: publishes one revision that combines the ${n} of branch ${branch.id} with what the Active ` +
        `changed since revision ${branch.fork.seq}, field by field by each type's merge rules.`,
      prefer
        ? `Fields both sides changed differently take the ${prefer === "active" ? "Active's" : "branch's"} value.`
        : "If both sides changed a field differently, the merge is refused and lists those conflicts; nothing is published.",
    ],
  };
  const titles = { "keep-active": "Keep the Active's state", "keep-branch": "Take the branch's state", "merge": "Merge" };
  const ok = await confirmAction(`${titles[how]}: branch ${branch.id}`, texts[how], titles[how], how === "keep-branch");
  if (!ok) {
    return;
  }
  const body = how === "keep-active" ? { keep: "active" }
    : how === "keep-branch" ? { keep: "branch" }
      : { merge: prefer ? { prefer } : {} };
  await act(`Resolving branch ${branch.id}…`, `Branch ${branch.id} not resolved`,
    () => api.post(`/v1/collisions/${branch.id}/resolve`, body),
    (r) => `Branch ${r.branch} resolved (${r.how})` +
      (r.revision ? `: revision ${r.revision.seq} published.` : ": nothing published."));
  refreshCollisions();
}

// -- start --------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    signIn(token);
  });
  $("sign-out").addEventListener("click", () => {
    api.forget();
    showLogin("Signed out.");
  });
  $("planned-form").addEventListener("submit", plannedChangeover);
  $("forced").addEventListener("click", forcedChangeover);
  $("domain-planned-form").addEventListener("submit", domainChangeover);
  $("diff-form").addEventListener("submit", (e) => {
    e.preventDefault();
    showDiff(Number($("diff-from").value), Number($("diff-to").value));
  });
  if (api.token()) {
    signIn(api.token());
  } else {
    showLogin("");
  }
});
