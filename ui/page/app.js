// SPDX-License-Identifier: Apache-2.0
// The status page: reads /ui/api/* and builds the views with DOM calls only. Every value from
// the mirror goes in as text (textContent, attributes), never as markup.
"use strict";

(function () {
  const view = document.getElementById("view");
  const errorBox = document.getElementById("error");
  const updated = document.getElementById("updated");
  const PAGE = 50;
  const DIGEST = /^sha(256:[0-9a-f]{64}|512:[0-9a-f]{128})$/;
  let timer = null;
  let generation = 0; // a view drawn after a newer navigation is dropped
  const repoState = { q: "", sort: "name", order: "asc", offset: 0 };

  // ---- helpers ----------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) + " " + units[i];
  }

  function count(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
  }

  function iso(ms) {
    return new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
  }

  function ago(ms) {
    if (!ms) return "never";
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 0) return "just now";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400 * 2) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }

  function when(ms) {
    return ms ? el("time", { datetime: iso(ms), title: iso(ms), text: ago(ms) }) : el("span", { class: "muted", text: "never" });
  }

  function duration(s) {
    if (s % 86400 === 0) return s / 86400 + " d";
    if (s % 3600 === 0) return s / 3600 + " h";
    if (s % 60 === 0) return s / 60 + " min";
    return s + " s";
  }

  function pct(x) {
    return (x * 100).toFixed(x >= 0.999 || x === 0 ? 0 : 1) + "\u00a0%";
  }

  const TYPES = {
    "application/vnd.oci.image.index.v1+json": "OCI index",
    "application/vnd.docker.distribution.manifest.list.v2+json": "Docker list",
    "application/vnd.oci.image.manifest.v1+json": "OCI image",
    "application/vnd.docker.distribution.manifest.v2+json": "Docker image",
  };

  function typeLabel(mt) {
    return el("span", { class: "type", title: mt, text: TYPES[mt] || mt || "–" });
  }

  function shortDigest(d) {
    return d ? d.replace(/^(sha\d+:)([0-9a-f]{12})[0-9a-f]*$/, "$1$2…") : "–";
  }

  function digestCell(d, href) {
    if (!d) return el("span", { class: "muted", text: "–" });
    const attrs = { class: "digest", title: d, text: shortDigest(d), "data-digest": d };
    return href ? el("a", Object.assign({ href: href }, attrs)) : el("code", attrs);
  }

  function platformText(p) {
    if (!p) return "";
    return [p.os, p.architecture, p.variant].filter((x) => x).join("/");
  }

  function bar(fraction, kind) {
    const f = Math.max(0, Math.min(1, fraction || 0));
    return el("div", { class: "bar" + (kind ? " " + kind : ""), role: "presentation" },
      el("span", { style: null, "data-w": f }));
  }

  function sizeBars(root) {
    // widths go through the CSSOM: the policy allows no inline style attributes
    for (const s of root.querySelectorAll(".bar > span[data-w]")) s.style.width = (Number(s.dataset.w) * 100).toFixed(2) + "%";
  }

  function hashFor(path, params) {
    const q = new URLSearchParams(params).toString();
    return "#/" + path + (q ? "?" + q : "");
  }

  function repoHash(r) {
    return hashFor("repository", r.hosted ? { hosted: 1, name: r.name } : { upstream: r.upstream, name: r.name });
  }

  async function api(path, params) {
    const q = new URLSearchParams(params || {}).toString();
    const resp = await fetch("/ui/api/" + path + (q ? "?" + q : ""), { headers: { Accept: "application/json" }, cache: "no-store" });
    let body = null;
    try {
      body = await resp.json();
    } catch (e) {
      body = null;
    }
    if (!resp.ok) {
      const msg = body && body.errors && body.errors[0] ? body.errors[0].message : resp.statusText;
      throw new Error(resp.status + ": " + msg);
    }
    return body;
  }

  function showError(e) {
    errorBox.hidden = false;
    errorBox.textContent = "Cannot read the mirror's status: " + (e && e.message ? e.message : String(e));
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
  }

  function section(title, extra, ...body) {
    return el("section", { class: "panel" },
      el("div", { class: "panel-head" }, el("h2", { text: title }), extra || null), ...body);
  }

  // A table whose cells carry their column's label (shown beside each value on narrow screens).
  function table(columns, rows, opts) {
    opts = opts || {};
    const head = el("tr", {}, columns.map((c) => {
      const th = el("th", { class: c.class || null, scope: "col" });
      if (c.sort) {
        const active = opts.sort === c.sort;
        const arrow = active ? (opts.order === "desc" ? " ↓" : " ↑") : "";
        th.append(el("button", { type: "button", class: "sort" + (active ? " active" : ""), "data-sort": c.sort,
          "aria-sort": active ? (opts.order === "desc" ? "descending" : "ascending") : null,
          onclick: () => opts.onSort(c.sort), text: c.label + arrow }));
      } else {
        th.textContent = c.label;
      }
      return th;
    }));
    const body = el("tbody", {});
    for (const r of rows) {
      const tr = el("tr", {});
      r.forEach((cell, i) => tr.append(el("td", { class: columns[i].class || null, "data-label": columns[i].label }, cell)));
      body.append(tr);
    }
    if (!rows.length) body.append(el("tr", { class: "empty" }, el("td", { colspan: columns.length, text: opts.empty || "Nothing here yet." })));
    return el("div", { class: "table-wrap" }, el("table", { class: opts.class || null }, el("thead", {}, head), body));
  }

  // ---- summary ------------------------------------------------------------------------------
  function card(title, big, sub, extra) {
    return el("div", { class: "card" }, el("div", { class: "card-title", text: title }),
      el("div", { class: "card-big", text: big }), extra || null, sub ? el("div", { class: "card-sub" }, sub) : null);
  }

  function summaryCards(s) {
    const ratio = s.hit_ratio;
    const hit = card("Hit ratio", ratio === null ? "–" : pct(ratio),
      [count(s.hits) + " hits · " + count(s.misses) + " misses", s.started ? el("span", { class: "muted" }, " since ", when(s.started)) : null],
      bar(ratio, "good"));
    hit.id = "card-hits";
    hit.dataset.hits = s.hits;
    hit.dataset.misses = s.misses;

    const fromCache = s.bytes_from_cache;
    const fromUp = s.bytes_from_upstream;
    let served;
    if (fromCache === null || fromUp === null) {
      served = card("Served from the cache", "–", "not counted by this build");
    } else {
      const all = fromCache + fromUp;
      served = card("Served from the cache", bytes(fromCache),
        [el("span", { class: "key up" }), bytes(fromUp) + " fetched upstream", all ? el("span", { class: "muted", text: " · " + pct(fromCache / all) + " of all bytes served" }) : null],
        bar(all ? fromCache / all : 0, "good split"));
    }
    served.id = "card-served";
    if (fromCache !== null) {
      served.dataset.cache = fromCache;
      served.dataset.upstream = fromUp;
    }

    const st = s.store;
    let disk;
    if (st.max_size) {
      disk = card("Disk", bytes(st.bytes), ["of " + bytes(st.max_size) + " max_size · " + (st.free === null ? "free space unknown" : bytes(st.free) + " free")],
        bar(st.bytes / st.max_size, st.bytes / st.max_size > 0.9 ? "bad" : ""));
    } else {
      const fsTotal = st.free === null ? 0 : st.bytes + st.free;
      disk = card("Disk", bytes(st.bytes), [(st.free === null ? "free space unknown" : bytes(st.free) + " free") + " · no max_size"],
        bar(fsTotal ? st.bytes / fsTotal : 0, ""));
    }
    disk.id = "card-disk";

    const c = s.counts;
    const content = el("div", { class: "card" }, el("div", { class: "card-title", text: "Cached" }),
      el("dl", { class: "counts" },
        el("div", {}, el("dt", { text: "repositories" }), el("dd", { text: count(c.repositories) })),
        el("div", {}, el("dt", { text: "tags" }), el("dd", { text: count(c.tags) })),
        el("div", {}, el("dt", { text: "manifests" }), el("dd", { text: count(c.manifests) })),
        el("div", {}, el("dt", { text: "blobs" }), el("dd", { text: count(c.blobs) }))));
    content.id = "card-counts";
    return el("div", { class: "cards" }, hit, served, disk, content);
  }

  function upstreamsPanel(s) {
    const rows = s.upstreams.map((u) => {
      const state = el("span", { class: "badge " + (u.state === "down" ? "bad" : "good"), text: u.state });
      const stateCell = el("div", { class: "state" }, state, u.since ? el("span", { class: "muted" }, " since ", when(u.since)) : null,
        u.reason ? el("div", { class: "reason", text: u.reason }) : null);
      let budget;
      if (u.limit === null || u.remaining === null) {
        budget = el("span", { class: "muted", text: "not announced" });
      } else {
        const f = u.limit ? u.remaining / u.limit : 0;
        budget = el("div", { class: "budget" },
          el("span", { text: count(u.remaining) + " of " + count(u.limit) + " left" + (u.window_s ? " per " + duration(u.window_s) : "") }),
          bar(f, f < 0.1 ? "bad" : f < 0.3 ? "warn" : "good"),
          u.seen ? el("span", { class: "muted small" }, "as of ", when(u.seen)) : null);
      }
      return [el("div", { class: "name" }, el("strong", { text: u.name }), el("div", { class: "muted small url", text: u.url })),
        stateCell, budget,
        u.last_prefetch ? el("div", { class: "last-prefetch" }, prefetchResult(u.last_prefetch), el("span", { class: "muted small" }, " ", when(u.last_prefetch.started)))
          : el("span", { class: "muted", text: "never" }),
        u.last_429 ? when(u.last_429) : el("span", { class: "muted", text: "never" })];
    });
    return section("Upstreams", null, table([{ label: "Upstream" }, { label: "State" }, { label: "Pull budget" }, { label: "Last prefetch" }, { label: "Last 429" }], rows, { class: "upstreams" }));
  }

  function prefetchResult(r) {
    return el("span", { class: "badge " + (r.result === "ok" ? "good" : r.result === "error" ? "bad" : "warn"), title: r.stopped || r.error || "", text: r.result });
  }

  function prefetchPanel(s) {
    const rows = s.prefetch_runs.map((r) => [when(r.started), el("span", {}, r.trigger, el("div", { class: "muted small", text: r.upstreams })),
      el("div", {}, prefetchResult(r), r.stopped ? el("div", { class: "reason", text: r.stopped }) : null, r.error ? el("div", { class: "reason", text: r.error }) : null),
      count(r.tags) + " tags", count(r.heads) + " HEADs, " + count(r.gets) + " GETs", count(r.blobs) + " blobs", bytes(r.bytes), count(r.errors)]);
    return section("Recent prefetch runs", null,
      table([{ label: "When" }, { label: "Trigger" }, { label: "Result" }, { label: "Checked", class: "num" }, { label: "Requests", class: "num" },
        { label: "Fetched", class: "num" }, { label: "Bytes", class: "num" }, { label: "Errors", class: "num" }], rows,
      { empty: "No prefetch run yet.", class: "prefetch" }));
  }

  function gcPanel(s) {
    const rows = s.gc_runs.map((g) => [when(g.started), el("span", {}, g.reason, g.dry_run ? el("span", { class: "badge", text: "dry run" }) : null),
      count(g.evicted) + " blobs", bytes(g.evicted_bytes), g.duration_ms + " ms"]);
    return section("Recent GC runs", null,
      table([{ label: "When" }, { label: "Reason" }, { label: "Evicted" }, { label: "Freed", class: "num" }, { label: "Took", class: "num" }], rows,
        { empty: "No GC run yet.", class: "gc" }));
  }

  function reposPanel() {
    const search = el("input", { type: "search", id: "repo-search", placeholder: "Filter repositories", value: repoState.q, "aria-label": "Filter repositories", autocomplete: "off" });
    const holder = el("div", { id: "repos" });
    let debounce = null;
    search.addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        repoState.q = search.value.trim();
        repoState.offset = 0;
        loadRepos(holder);
      }, 200);
    });
    return [section("Repositories", search, holder), loadRepos(holder)];
  }

  async function loadRepos(holder) {
    const mine = generation;
    let r;
    try {
      r = await api("repositories", { q: repoState.q, sort: repoState.sort, order: repoState.order, offset: repoState.offset, limit: PAGE });
    } catch (e) {
      if (mine === generation) showError(e);
      return;
    }
    if (mine !== generation) return;
    const onSort = (key) => {
      if (repoState.sort === key) repoState.order = repoState.order === "asc" ? "desc" : "asc";
      else {
        repoState.sort = key;
        repoState.order = key === "name" ? "asc" : "desc";
      }
      repoState.offset = 0;
      loadRepos(holder);
    };
    const rows = r.repositories.map((x) => [
      el("a", { href: repoHash(x), class: "repo", "data-repo": x.name, text: x.name }),
      x.hosted ? el("span", { class: "badge hosted", text: "hosted" }) : el("span", { class: "source", text: x.upstream }),
      x.tags === null ? el("span", { class: "muted", text: "–" }) : count(x.tags),
      bytes(x.bytes), when(x.last_pull)]);
    const t = table([{ label: "Repository", sort: "name" }, { label: "Source" }, { label: "Tags", class: "num" },
      { label: "Size", sort: "bytes", class: "num" }, { label: "Last pull", sort: "last" }], rows,
    { sort: repoState.sort, order: repoState.order, onSort: onSort, class: "repos", empty: repoState.q ? "No repository matches." : "Nothing cached yet: pull an image through the mirror." });
    const from = r.total ? r.offset + 1 : 0;
    const to = r.offset + r.repositories.length;
    const pager = el("div", { class: "pager" },
      el("span", { class: "muted", text: from + "–" + to + " of " + count(r.total) + (r.total !== r.all ? " matching (" + count(r.all) + " in all)" : "") }),
      el("span", { class: "spacer" }),
      el("button", { type: "button", disabled: r.offset === 0, onclick: () => { repoState.offset = Math.max(0, r.offset - PAGE); loadRepos(holder); }, text: "Previous" }),
      el("button", { type: "button", disabled: to >= r.total, onclick: () => { repoState.offset = r.offset + PAGE; loadRepos(holder); }, text: "Next" }));
    holder.replaceChildren(t, pager);
  }

  async function showSummary() {
    const mine = generation;
    const s = await api("summary");
    if (mine !== generation) return;
    document.getElementById("version").textContent = "v" + s.version;
    const [repos, loaded] = reposPanel();
    const frag = el("div", { class: "summary" }, summaryCards(s), upstreamsPanel(s), repos, prefetchPanel(s), gcPanel(s));
    sizeBars(frag);
    await loaded; // drawn whole: a refresh does not make the page jump
    if (mine !== generation) return;
    view.replaceChildren(frag);
    document.title = "regcache";
    stamp(s.now);
  }

  function stamp(ms) {
    updated.textContent = "read " + new Date(ms || Date.now()).toLocaleTimeString("en-GB");
  }

  // ---- a repository -------------------------------------------------------------------------
  function crumbs(...parts) {
    const nav = el("nav", { class: "crumbs", "aria-label": "breadcrumb" }, el("a", { href: "#/", text: "Overview" }));
    for (const p of parts) nav.append(el("span", { class: "sep", text: "/" }), p);
    return nav;
  }

  function platformChips(t, from) {
    if (!t.platforms) return el("span", { class: "muted", text: "single image" });
    const chips = el("div", { class: "chips" });
    for (const p of t.platforms) {
      const label = platformText(p.platform) || "unknown";
      const attrs = { class: "chip" + (p.stored ? "" : " absent"), title: (p.stored ? "cached: " : "not cached: ") + (p.digest || ""), text: label };
      chips.append(p.stored && p.digest && DIGEST.test(p.digest) ? el("a", Object.assign({ href: hashFor("manifest", Object.assign({ digest: p.digest }, from)) }, attrs)) : el("span", attrs));
    }
    return chips;
  }

  async function showRepository(params) {
    const mine = generation;
    const hosted = params.get("hosted") === "1";
    const name = params.get("name") || "";
    const upstream = params.get("upstream") || "";
    const offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
    const q = hosted ? { hosted: 1, name: name, offset: offset, limit: PAGE } : { upstream: upstream, name: name, offset: offset, limit: PAGE };
    const r = await api("repository", q);
    if (mine !== generation) return;
    const from = hosted ? { hosted: 1, name: name } : { upstream: upstream, name: name };
    const rows = r.tags.map((t) => [
      el("span", {}, el("strong", { class: "tag", text: t.tag }),
        t.pinned ? el("span", { class: "badge pinned", title: t.pinned, text: "pinned" }) : null,
        t.pinned ? el("div", { class: "muted small pin-reason", text: t.pinned }) : null),
      DIGEST.test(t.digest) ? digestCell(t.digest, hashFor("manifest", Object.assign({ digest: t.digest }, from))) : digestCell(t.digest),
      typeLabel(t.media_type), platformChips(t, from),
      t.size === null ? el("span", { class: "muted", text: "–" }) : el("span", {}, bytes(t.size), t.platforms && t.platforms_stored < t.platforms.length ? el("span", { class: "muted small", text: " (" + t.platforms_stored + " of " + t.platforms.length + " cached)" }) : null),
      when(t.last_pull), hosted ? el("span", { class: "muted", text: "pushed" }) : when(t.validated)]);
    const source = hosted ? el("span", { class: "badge hosted", text: "hosted" }) : el("span", { class: "source", text: upstream });
    const head = el("div", { class: "title-row" }, el("h1", { class: "repo-name", text: name }), source);
    const t = table([{ label: "Tag" }, { label: "Digest" }, { label: "Type" }, { label: "Platforms" }, { label: "Size", class: "num" },
      { label: "Last pull" }, { label: "Validated" }], rows, { class: "tags", empty: "No tags cached for this repository." });
    const base = hosted ? { hosted: 1, name: name } : { upstream: upstream, name: name };
    const pager = r.total > PAGE ? el("div", { class: "pager" },
      el("span", { class: "muted", text: (r.offset + 1) + "–" + (r.offset + r.tags.length) + " of " + count(r.total) + " tags" }), el("span", { class: "spacer" }),
      el("a", { class: "button" + (r.offset === 0 ? " disabled" : ""), href: hashFor("repository", Object.assign({}, base, { offset: Math.max(0, r.offset - PAGE) })), text: "Previous" }),
      el("a", { class: "button" + (r.offset + PAGE >= r.total ? " disabled" : ""), href: hashFor("repository", Object.assign({}, base, { offset: r.offset + PAGE })), text: "Next" })) : null;
    const frag = el("div", {}, crumbs(el("span", { text: hosted ? "hosted" : upstream }), el("span", { text: name })), head,
      section("Tags", el("span", { class: "muted", text: count(r.total) + (r.total === 1 ? " tag" : " tags") }), t, pager));
    view.replaceChildren(frag);
    document.title = name + " · regcache";
    stamp();
  }

  // ---- a manifest ---------------------------------------------------------------------------
  async function showManifest(params) {
    const mine = generation;
    const digest = params.get("digest") || "";
    const name = params.get("name");
    const from = name ? (params.get("hosted") === "1" ? { hosted: 1, name: name } : { upstream: params.get("upstream") || "", name: name }) : null;
    const m = await api("manifest", { digest: digest });
    if (mine !== generation) return;
    const facts = el("dl", { class: "facts" },
      el("div", { class: "wide" }, el("dt", { text: "Digest" }), el("dd", {}, el("code", { class: "digest full", id: "manifest-digest", text: m.digest }))),
      el("div", { class: "wide" }, el("dt", { text: "Media type" }), el("dd", { text: m.media_type })),
      m.artifact_type ? el("div", {}, el("dt", { text: "Artifact type" }), el("dd", { text: m.artifact_type })) : null,
      el("div", {}, el("dt", { text: "Manifest size" }), el("dd", { text: bytes(m.size) })),
      m.kind === "image" ? el("div", {}, el("dt", { text: "Image size" }), el("dd", { text: bytes(m.image_size) })) : null,
      el("div", {}, el("dt", { text: "Last pull" }), el("dd", {}, when(m.last_pull))),
      Object.entries(m.annotations || {}).map(([k, v]) => el("div", {}, el("dt", { text: k.replace("org.opencontainers.image.", "") }), el("dd", { class: "annotation", text: v }))));
    let body;
    if (m.kind === "index") {
      const rows = m.manifests.map((c) => [
        el("strong", { class: "platform", text: platformText(c.platform) || "unknown" }),
        c.stored && c.digest && DIGEST.test(c.digest) ? digestCell(c.digest, hashFor("manifest", Object.assign({ digest: c.digest }, from || {}))) : digestCell(c.digest),
        typeLabel(c.media_type), c.image_size === null ? el("span", { class: "muted", text: "–" }) : bytes(c.image_size),
        c.stored ? el("span", { class: "badge good", text: "cached" }) : el("span", { class: "badge", text: "not cached" })]);
      body = section("Platforms", el("span", { class: "muted", text: m.manifests.length + " listed" }),
        table([{ label: "Platform" }, { label: "Digest" }, { label: "Type" }, { label: "Image size", class: "num" }, { label: "Cached" }], rows, { class: "platforms" }));
    } else {
      const rows = [];
      if (m.config) rows.push([el("span", { class: "muted", text: "config" }), digestCell(m.config.digest), el("span", { class: "mt", text: m.config.media_type }), bytes(m.config.size), el("span", { class: "muted", text: "–" })]);
      m.layers.forEach((l, i) => rows.push([String(i + 1), digestCell(l.digest), el("span", { class: "mt", text: l.media_type }), el("span", { class: "size", "data-size": l.size, text: bytes(l.size) }),
        l.stored ? el("span", { class: "badge good", text: "cached" }) : el("span", { class: "badge", text: "not cached" })]));
      body = section("Layers", el("span", { class: "muted", text: m.layers.length + (m.layers.length === 1 ? " layer · " : " layers · ") + bytes(m.image_size) }),
        table([{ label: "#" }, { label: "Digest" }, { label: "Media type" }, { label: "Size", class: "num" }, { label: "Cached" }], rows, { class: "layers" }));
    }
    const trail = from ? [el("a", { href: repoHash(from), text: from.name })] : [];
    const frag = el("div", {}, crumbs(...trail, el("span", { text: shortDigest(m.digest) })),
      el("div", { class: "title-row" }, el("h1", { text: m.kind === "index" ? "Image index" : "Image" }), typeLabel(m.media_type)),
      section("Manifest", null, facts), body);
    view.replaceChildren(frag);
    document.title = shortDigest(m.digest) + " · regcache";
    stamp();
  }

  // ---- navigation ---------------------------------------------------------------------------
  async function route() {
    generation++;
    clearTimeout(timer);
    clearError();
    const h = location.hash.replace(/^#\/?/, "");
    const [path, query] = h.split("?");
    const params = new URLSearchParams(query || "");
    document.body.dataset.view = path || "summary";
    try {
      if (path === "repository") await showRepository(params);
      else if (path === "manifest") await showManifest(params);
      else {
        await showSummary();
        const mine = generation;
        const again = () => {
          if (mine !== generation) return;
          // not while someone types a filter or reads another tab
          if (document.activeElement && document.activeElement.id === "repo-search" || document.hidden) timer = setTimeout(again, 30000);
          else route();
        };
        timer = setTimeout(again, 30000);
      }
      document.body.dataset.ready = String(generation);
    } catch (e) {
      showError(e);
      document.body.dataset.ready = String(generation);
    }
  }

  document.getElementById("refresh").addEventListener("click", route);
  window.addEventListener("hashchange", () => {
    window.scrollTo(0, 0);
    route();
  });
  route();
})();
