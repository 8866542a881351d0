// What the status page draws from API answers: the server table, the arbiter, the revision list,
// field-level diffs with referenced objects by name, and collision branches. Everything is built
// with DOM calls and textContent, never from HTML strings, so no value from the store can inject
// markup.
"use strict";

/** Text and colour class of every sync status, role and designation the API reports. */
const STATUS_TEXT = {
  "synchronized": ["✓ synchronized", "ok"],
  "lagging": ["↻ lagging", "warn"],
  "never-synchronized": ["○ never synchronized", "idle"],
  "advanced": ["▲ advanced (ahead of this node)", "info"],
  "collision": ["✕ collision", "bad"],
  "unreachable": ["✕ unreachable", "bad"],
  "apply-failing": ["✕ apply failing", "bad"],
  "damaged": ["✕ damaged", "bad"],
};
const ROLE_TEXT = {
  "active": ["● active", "active"],
  "standby": ["○ standby", "standby"],
};

const UID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") {
      e.className = v;
    } else if (k === "text") {
      e.textContent = v;
    } else if (v !== undefined && v !== null && v !== false) {
      e.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children) {
    if (c !== null && c !== undefined) {
      e.append(c);
    }
  }
  return e;
}

function badge(table, key, fallbackClass) {
  const [text, cls] = table[key] || [key || "unknown", fallbackClass || "idle"];
  return el("span", { class: `badge ${cls}`, "data-value": key || "unknown", text });
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "never";
}

/** "1.2 s ago", against the node's own clock (`now_ms` of the sample). */
function ago(ms, nowMs) {
  if (!ms) {
    return "never";
  }
  const d = Math.max(0, nowMs - ms);
  if (d < 1000) {
    return "just now";
  }
  if (d < 60000) {
    return `${(d / 1000).toFixed(1)} s ago`;
  }
  if (d < 3600000) {
    return `${Math.floor(d / 60000)} min ago`;
  }
  return when(ms);
}

/** The next step of a damaged node, from its status's `recovery` (docs/storage.md). */
function recoveryText(r) {
  switch (r && r.action) {
    case "heal":
      return "this Standby sets its store aside and heals by a full sync from the Active, by itself.";
    case "failover":
      return `automatic failover hands the role to the synchronized Standby ${r.to} (this node stops ` +
        `renewing its lease), or change over to ${r.to} now (Actions); this node then heals by a full sync.`;
    case "changeover":
      return `change over to the synchronized Standby ${r.to} (Actions, or \`mgha changeover --to ${r.to}\`); ` +
        "this node then heals by a full sync from it.";
    case "no_standby":
      return "no Standby is connected and synchronized to take the role: start one (or wait until it is " +
        "synchronized) and change over to it, or restore a backup into a new data directory.";
    default:
      return "see `mgha status` on this node.";
  }
}

const views = {
  /** The server table: this node first, then its peers. */
  servers(tbody, sample) {
    const s = sample.status;
    const rows = [];
    const me = el("tr", { "data-server": s.node.name, "data-role": s.node.role },
      el("th", { scope: "row" }, el("span", { text: s.node.name }), el("span", { class: "tag", text: "this node" })),
      el("td", { text: sample.address || "—" }),
      el("td", { text: s.node.designation }),
      el("td", {}, badge(ROLE_TEXT, s.node.role)),
      el("td", { text: epochText(s.node.epoch) }),
      el("td", { text: String(s.head.seq) }),
      el("td", {}, s.node.role === "active"
        ? el("span", { class: "badge ok", "data-value": "source", text: "● serving as Active" })
        : el("span", {
          class: "badge idle",
          "data-value": "follower",
          text: `following ${s.active || "(Active not known yet)"}`,
        })),
      el("td", { text: "—" }),
      el("td", { text: "—" })
    );
    rows.push(me);
    for (const p of byName(s.peers)) {
      const lag = s.node.role === "active"
        ? `${p.lag_revisions} revision${p.lag_revisions === 1 ? "" : "s"}, ${p.lag_ms} ms`
        : "—";
      rows.push(el("tr", { "data-server": p.name, "data-role": p.role || "unknown", "data-status": p.status },
        el("th", { scope: "row", text: p.name }),
        el("td", { text: p.listen }),
        el("td", { text: p.designation }),
        el("td", {}, roleCell(p)),
        el("td", { text: epochText(p.epoch) }),
        el("td", { text: String(p.head.seq) }),
        el("td", {}, badge(STATUS_TEXT, p.status),
          p.apply_error ? el("span", { class: "tag", text: p.apply_error }) : null,
          p.connected ? null : el("span", { class: "tag", text: "not connected" })),
        el("td", { text: lag }),
        el("td", { text: ago(p.last_contact_ms, sample.time_ms) })
      ));
    }
    tbody.replaceChildren(...rows);
  },

  /**
   * What is wrong with this node's own store, and what to do: a damaged store (`damage`, with
   * the node library's `recovery`), a store that cannot write (`store_fault`), and where a
   * damaged store was set aside (`archived`). Hidden while there is nothing to say.
   */
  health(box, body, s) {
    const items = [];
    if (s.damage) {
      items.push(el("p", { "data-health": "damage" },
        el("strong", { text: "Store damaged: " }), el("span", { text: s.damage })));
      items.push(el("p", { "data-health": "recovery", "data-action": s.recovery ? s.recovery.action : "unknown" },
        el("strong", { text: "Next step: " }), el("span", { text: recoveryText(s.recovery) })));
    }
    if (s.store_fault) {
      const f = s.store_fault;
      items.push(el("p", { "data-health": "store-fault", "data-kind": f.kind },
        el("strong", { text: f.kind === "disk-full" ? "Disk full: " : "Store cannot write: " }),
        el("span", { text: `${f.error} (since ${when(f.since_ms)}); publishes on this node fail until a write succeeds` })));
    }
    if (s.archived) {
      items.push(el("p", { "data-health": "archived", class: "hint" },
        el("span", { text: `A damaged store of this node was set aside as ${s.archived} before a full sync healed it.` })));
    }
    box.hidden = items.length === 0;
    box.classList.toggle("bad", Boolean(s.damage || s.store_fault));
    body.replaceChildren(...items);
  },

  /** The arbiter of automatic failover; hidden in manual mode. */
  arbiter(box, status) {
    const f = status.failover;
    if (!f) {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    box.hidden = false;
    const a = f.arbiter || {};
    const names = new Map([[status.node.node_id, status.node.name]].concat(status.peers.map((p) => [p.node_id, p.name])));
    const holder = a.holder
      ? `${names.get(a.holder.node_id) || a.holder.node_id}, epoch ${epochText(a.holder.epoch)}`
      : "none";
    const facts = el("dl", { class: "facts" },
      el("dt", { text: "Failover" }), el("dd", { text: `${f.mode}, after ${f.failover_after_ms} ms` }),
      el("dt", { text: "Arbiter" }), el("dd", { text: a.kind || "—" }),
      el("dt", { text: "Quorum" }), el("dd", {}, a.has_quorum
        ? el("span", { class: "badge ok", text: "✓ held" })
        : el("span", { class: "badge bad", text: "✕ lost" })),
      el("dt", { text: "Holder" }), el("dd", { text: holder }),
      el("dt", { text: "Lease left" }),
      el("dd", { text: f.lease_left_ms !== undefined && f.lease_left_ms !== null ? `${f.lease_left_ms} ms` : "—" })
    );
    if (f.last_error) {
      facts.append(el("dt", { text: "Last error" }), el("dd", { text: f.last_error }));
    }
    const rows = (a.members || []).map((m) => el("tr", { "data-member": m.name },
      el("th", { scope: "row", text: m.name }),
      el("td", { text: m.address || "—" }),
      el("td", {}, m.healthy
        ? el("span", { class: "badge ok", text: "✓ healthy" })
        : el("span", { class: "badge bad", text: "✕ unhealthy" })),
      el("td", { text: m.detail || "" })));
    const table = el("table", { class: "grid" },
      el("caption", { text: "Arbiter members (data nodes and witnesses)" }),
      el("thead", {}, el("tr", {},
        el("th", { scope: "col", text: "Member" }), el("th", { scope: "col", text: "Address" }),
        el("th", { scope: "col", text: "Health" }), el("th", { scope: "col", text: "Detail" }))),
      el("tbody", {}, ...rows));
    box.replaceChildren(el("h3", { text: "Automatic failover" }), facts, rows.length ? table : null);
  },

  /**
   * The domain table (`DomainList`): one row per domain, the global one first, with this
   * server's replica (role, head, objects) and every other replica's sync status as this
   * replica sees it, in the server table's vocabulary. The domain's name is the button that
   * selects it (`selected` names the one shown). `me` is this server's name: every other
   * replica the registry names is listed, "not known yet" until this replica has heard of it.
   */
  domains(tbody, list, selected, me, onSelect) {
    const rows = list.map((d) => {
      const pick = views.button(d.name, `${d.name}: show its revisions`, () => onSelect(d.name), "link");
      pick.setAttribute("aria-pressed", d.name === selected ? "true" : "false");
      const seen = new Map((d.peers || []).map((p) => [p.name, p]));
      const names = d.replicas.filter((n) => n !== me);
      for (const p of seen.keys()) {
        if (!names.includes(p)) {
          names.push(p);
        }
      }
      const peers = names.sort().map((n) => {
        const p = seen.get(n);
        return el("li", { "data-peer": n, "data-status": p ? p.status : "unknown" },
          el("span", { class: "peer-name", text: n }), " ",
          p ? badge(STATUS_TEXT, p.status) : el("span", { class: "badge idle", text: "? not known yet" }),
          p && !p.connected ? el("span", { class: "tag", text: "not connected" }) : null);
      });
      const others = d.here
        ? peers.length ? el("ul", { class: "peers" }, ...peers) : el("span", { class: "hint", text: "none" })
        : el("span", { class: "hint", text: "not seen from here" });
      return el("tr", {
        "data-domain": d.name,
        "data-role": d.role || "none",
        "data-head": d.head_seq === undefined || d.head_seq === null ? "" : String(d.head_seq),
        "data-objects": d.objects === undefined || d.objects === null ? "" : String(d.objects),
        "data-active": d.active || "",
        class: d.name === selected ? "selected" : null,
      },
      el("th", { scope: "row" }, pick, d.global ? el("span", { class: "tag", text: "on every server" }) : null),
      el("td", { text: d.replicas.join(", ") }),
      el("td", { text: d.active || "not known" }),
      el("td", {}, d.here ? badge(ROLE_TEXT, d.role) : el("span", { class: "badge idle", text: "no replica here" })),
      el("td", { text: d.here ? String(d.head_seq) : "—" }),
      el("td", { text: d.here ? String(d.objects) : "—" }),
      el("td", {}, others));
    });
    tbody.replaceChildren(...rows);
  },

  /** The revision list, each row with a button that diffs it against its parent. */
  revisions(tbody, list, onDiff) {
    const rows = list.map((r) => el("tr", { "data-seq": r.seq },
      el("th", { scope: "row", text: String(r.seq) }),
      el("td", { text: when(r.time_ms) }),
      el("td", { text: r.author }),
      el("td", { text: r.message || "(no message)" }),
      el("td", { text: String(r.changes) }),
      el("td", {}, views.button(`Diff ${r.seq}`, `Diff ${r.seq}: what revision ${r.seq} changed`, () => onDiff(r.seq - 1, r.seq)))
    ));
    if (rows.length === 0) {
      rows.push(el("tr", {}, el("td", { colspan: 6, text: "No revisions yet." })));
    }
    tbody.replaceChildren(...rows);
  },

  button(text, label, onClick, cls) {
    const b = el("button", { type: "button", class: cls || "secondary", "aria-label": label !== text ? label : null, text });
    b.addEventListener("click", onClick);
    return b;
  },

  /**
   * A list of object diffs (`ObjectDiffBody`), uids in field values shown as the names `names`
   * resolves (a Map uid -> "type name").
   */
  objectDiffs(objects, names, emptyText) {
    if (objects.length === 0) {
      return el("p", { class: "hint", text: emptyText });
    }
    return el("ul", { class: "diff" }, ...objects.map((o) => {
      const kind = { added: "＋ added", removed: "− removed", modified: "± modified" }[o.kind] || o.kind;
      const head = el("p", { class: "diff-head" },
        el("span", { class: `badge kind-${o.kind}`, text: kind }), " ",
        el("span", { class: "type", text: o.type }), " ",
        el("strong", { text: o.name }),
        o.old_name ? el("span", { text: ` (was ${o.old_name})` }) : null);
      const rows = o.fields.map((f) => el("tr", {},
        el("th", { scope: "row", text: f.field }),
        el("td", {}, views.value(f.before, names)),
        el("td", {}, views.value(f.after, names))));
      const table = rows.length
        ? el("table", { class: "grid fields" },
          el("caption", { class: "sr-only", text: `Fields of ${o.type} ${o.name}` }),
          el("thead", {}, el("tr", {},
            el("th", { scope: "col", text: "Field" }), el("th", { scope: "col", text: "Before" }),
            el("th", { scope: "col", text: "After" }))),
          el("tbody", {}, ...rows))
        : null;
      return el("li", { "data-object": `${o.type}/${o.name}` }, head, table);
    }));
  },

  /** One field value: absent, a reference (by name), a list of values, or JSON. */
  value(v, names) {
    if (v === null || v === undefined) {
      return el("span", { class: "absent", text: "absent" });
    }
    if (typeof v === "string" && UID_RE.test(v)) {
      const name = names.get(v.toLowerCase());
      return name
        ? el("span", { class: "ref", title: `uid ${v}`, text: name })
        : el("code", { title: "an object no longer in the configuration", text: v });
    }
    if (Array.isArray(v)) {
      const items = v.map((x) => el("li", {}, views.value(x, names)));
      return items.length ? el("ul", { class: "values" }, ...items) : el("span", { text: "[]" });
    }
    if (typeof v === "object") {
      return el("code", { text: JSON.stringify(v) });
    }
    return el("span", { text: String(v) });
  },

  /** Collision branches: open ones with their actions, resolved ones as a record. */
  collisions(box, list, handlers) {
    if (list.length === 0) {
      box.replaceChildren(el("p", { class: "hint", text: "No collision branches on this node." }));
      return;
    }
    const items = list.map((b) => {
      const open = b.status === "open";
      const state = open
        ? el("span", { class: "badge bad", text: "✕ open" })
        : el("span", { class: "badge ok", text: `✓ resolved: ${b.resolution ? b.resolution.how : "yes"}` });
      const summary = el("p", {},
        state, " ",
        el("strong", { text: `Branch ${b.id}` }),
        ` from ${b.node}: ${b.revisions} revision${b.revisions === 1 ? "" : "s"} after revision ${b.fork.seq} ` +
        `(the fork), detected ${when(b.detected_ms)}.`);
      const item = el("li", { "data-branch": b.id, "data-status": b.status }, summary);
      if (open) {
        const prefer = el("select", { id: `merge-prefer-${b.id}` },
          el("option", { value: "", text: "refuse the merge" }),
          el("option", { value: "active", text: "take the Active's value" }),
          el("option", { value: "branch", text: "take the branch's value" }));
        item.append(el("div", { class: "inline" },
          views.button("Show diff", `Show diff of branch ${b.id}`, () => handlers.diff(b, item)),
          views.button("Keep active", `Keep active: resolve branch ${b.id} with the Active's state`, () => handlers.resolve(b, "keep-active")),
          views.button("Keep branch", `Keep branch: resolve branch ${b.id} with its own state`, () => handlers.resolve(b, "keep-branch")),
          views.button("Merge", `Merge: resolve branch ${b.id} by merging both sides`, () => handlers.resolve(b, "merge", prefer.value)),
          el("label", { for: prefer.id, text: "On conflicts:" }), prefer));
      }
      return item;
    });
    box.replaceChildren(el("ul", { class: "branches" }, ...items));
  },

  /** A branch's diff (`CollisionDiffBody`). */
  collisionDiff(diff, names) {
    const parts = [
      el("h3", { text: `What the branch changed since revision ${diff.fork}` }),
      views.objectDiffs(diff.branch_changes, names, "Nothing."),
      el("h3", { text: `What the Active changed since revision ${diff.fork}` }),
      views.objectDiffs(diff.active_changes, names, "Nothing."),
      el("h3", { text: "Conflicts a merge must settle" }),
    ];
    if (diff.conflicts.length === 0) {
      parts.push(el("p", { class: "hint", text: "None: a merge combines both sides by itself." }));
    } else {
      parts.push(el("table", { class: "grid" },
        el("caption", { class: "sr-only", text: "Conflicts" }),
        el("thead", {}, el("tr", {}, ...["Object", "Field", "Fork", "Active", "Branch"].map((t) => el("th", { scope: "col", text: t })))),
        el("tbody", {}, ...diff.conflicts.map((c) => el("tr", {},
          el("th", { scope: "row", text: `${c.type} ${c.name}` }),
          el("td", { text: c.field }),
          el("td", {}, views.value(c.base, names)),
          el("td", {}, views.value(c.active, names)),
          el("td", {}, views.value(c.branch, names)))))));
    }
    return el("div", { class: "collision-diff" }, ...parts);
  },
};

/** A peer's role; one out of contact shows the role it last had, said as such. */
function roleCell(p) {
  if (!p.role) {
    return el("span", { class: "badge idle", text: "? not known yet" });
  }
  if (p.connected) {
    return badge(ROLE_TEXT, p.role);
  }
  return el("span", { class: "badge idle", "data-value": p.role, text: `${p.role} when last seen` });
}

/** Peers in name order, so rows and charts keep their places from one sample to the next. */
function byName(peers) {
  return peers.slice().sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
}

/** An epoch as the CLI prints it: its round and the tag of the node that opened it. */
function epochText(epoch) {
  return `${Math.floor(epoch / 65536)}.${epoch % 65536}`;
}
