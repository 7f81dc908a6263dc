// The QaaS dashboard: networks and nodes of the signed-in tenant, live.
// Reads over HTTP POST to the GraphQL endpoint, follows changes with one graphql-ws
// subscription (networkChanged, all of the tenant's networks) and re-reads everything after
// each (re)connection. The token lives in sessionStorage only. No framework: each network and
// node has one DOM element, updated in place, so forms keep their focus and text.
(function () {
  "use strict";
  var TOKEN_KEY = "qaas.token";
  var graphqlPath = document.body.dataset.graphql;
  var httpUrl = new URL(graphqlPath, location.href).href;
  var wsUrl = new URL(graphqlPath, location.href);
  wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";

  var NETWORK = "id name consensus status external coordinatorIp";
  var NODE =
    "id name role status statusReason statusChangedAt ip " +
    "pod { phase ready restartCount reason } " +
    "chain { blockNumber peerCount raftRole syncing error } " +
    "statusHistory(last: 5) { status reason at }";
  var LIST =
    "query Dashboard { viewer { role tenant { name } } networks(first: 100) { edges { node { " +
    NETWORK + " nodes(first: 100) { edges { node { " + NODE + " } } } } } } }";
  var LIVE =
    "subscription Live { networkChanged { kind network { " + NETWORK + " } node { " + NODE +
    " } } }";
  var USER_ERRORS = "userErrors { field message code }";

  var $ = function (id) { return document.getElementById(id); };
  var networks = new Map(); // id -> {data, el, nodes: Map(id -> {data, el})}
  var client = null;
  var stopLive = null;
  var buffered = null; // events that arrive while the list is being read

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "class") node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function showAlert(message) {
    $("alert").textContent = message || "";
    $("alert").hidden = !message;
  }

  function setConn(text, kind) {
    $("conn").textContent = text;
    $("conn").className = "conn " + (kind || "");
  }

  // -- HTTP ---------------------------------------------------------------------------------

  function AuthProblem(message) { this.message = message; }

  async function gql(query, variables) {
    var token = sessionStorage.getItem(TOKEN_KEY);
    var response;
    try {
      response = await fetch(httpUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
        body: JSON.stringify({ query: query, variables: variables || {} }),
        credentials: "omit",
      });
    } catch (error) {
      throw new Error("Cannot reach QaaS (" + error.message + "). Check the connection.");
    }
    var body;
    try { body = await response.json(); } catch (_) {
      throw new Error("QaaS answered HTTP " + response.status + " without a GraphQL body.");
    }
    var errors = body.errors || [];
    var auth = errors.find(function (e) {
      return e.extensions && e.extensions.code === "UNAUTHENTICATED";
    });
    if (auth) throw new AuthProblem(auth.message);
    if (errors.length) throw new Error(errors.map(function (e) { return e.message; }).join("; "));
    return body.data;
  }

  function failed(error) {
    if (error instanceof AuthProblem) {
      signOut("The token was not accepted: " + error.message + ". Sign in with a valid token.");
    } else {
      showAlert(error.message);
    }
  }

  // -- rendering ----------------------------------------------------------------------------

  function badge(status) { return el("span", { class: "badge s-" + status, text: status }); }

  function time(iso) {
    var date = new Date(iso);
    return isNaN(date) ? iso : date.toLocaleTimeString();
  }

  function networkEntry(data) {
    var entry = networks.get(data.id);
    if (entry) return entry;
    var id = data.id;
    var nameInput = el("input", { name: "name", required: "", autocomplete: "off" });
    var addForm = el("form", { class: "row add" }, [
      el("label", {}, [document.createTextNode("New node "), nameInput]),
      el("button", { type: "submit", text: "Add node" }),
      el("p", { class: "error", role: "alert" }),
    ]);
    addForm.addEventListener("submit", function (event) {
      event.preventDefault();
      mutate(addForm, "nodeAdd", "NodeAddInput", { networkId: id, name: nameInput.value },
        "node { " + NODE + " }", function (payload) {
          nameInput.value = "";
          if (payload.node) upsertNode(id, payload.node);
        });
    });
    var remove = el("button", { type: "button", class: "danger", text: "Delete network" });
    remove.addEventListener("click", function () {
      var name = networks.get(id).data.name;
      if (!confirm("Delete the network " + name + " and all of its nodes?")) return;
      mutate(remove.parentNode, "networkDelete", "NetworkDeleteInput", { id: id }, "", null);
    });
    var section = el("section", { class: "card network", "data-id": id }, [
      el("div", { class: "head" }, [el("h3"), el("span", { class: "status" }), remove,
        el("p", { class: "error", role: "alert" })]),
      el("p", { class: "facts muted" }),
      el("ul", { class: "nodes" }),
      addForm,
    ]);
    section.setAttribute("aria-label", "Network " + data.name);
    remove.setAttribute("aria-label", "Delete network " + data.name);
    entry = { data: data, el: section, nodes: new Map() };
    networks.set(id, entry);
    $("networks").appendChild(section);
    return entry;
  }

  function upsertNetwork(data) {
    var entry = networkEntry(data);
    entry.data = data;
    var section = entry.el;
    section.querySelector("h3").textContent = data.name;
    section.querySelector(".status").replaceChildren(badge(data.status));
    var facts = [data.consensus, data.external ? "joined (runs elsewhere)" : "runs here"];
    if (data.coordinatorIp) facts.push("coordinator " + data.coordinatorIp);
    section.querySelector(".facts").textContent = facts.join(" · ");
    if (data.nodes) {
      var seen = new Set();
      data.nodes.edges.forEach(function (edge) { seen.add(edge.node.id); upsertNode(data.id, edge.node); });
      entry.nodes.forEach(function (_, nodeId) { if (!seen.has(nodeId)) removeNode(data.id, nodeId); });
    }
    counts();
    return entry;
  }

  function removeNetwork(id) {
    var entry = networks.get(id);
    if (!entry) return;
    entry.el.remove();
    networks.delete(id);
    counts();
  }

  function counts() {
    $("count").textContent = "(" + networks.size + ")";
    $("empty").hidden = networks.size > 0;
  }

  function podText(pod) {
    if (!pod) return "no pod";
    var parts = ["pod " + (pod.phase || "?"), pod.ready ? "ready" : "not ready"];
    parts.push(pod.restartCount + (pod.restartCount === 1 ? " restart" : " restarts"));
    if (pod.reason) parts.push(pod.reason);
    return parts.join(" · ");
  }

  function chainText(chain) {
    if (!chain) return "";
    var parts = [];
    if (chain.blockNumber != null) parts.push("block " + chain.blockNumber);
    if (chain.peerCount != null) parts.push(chain.peerCount + (chain.peerCount === 1 ? " peer" : " peers"));
    if (chain.raftRole) parts.push("raft " + chain.raftRole);
    if (chain.syncing) parts.push("syncing");
    if (chain.error) parts.push("probe: " + chain.error);
    return parts.join(" · ");
  }

  function nodeEntry(networkId, data) {
    var network = networks.get(networkId);
    var entry = network.nodes.get(data.id);
    if (entry) return entry;
    var id = data.id;
    var remove = el("button", { type: "button", class: "danger small", text: "Delete" });
    remove.addEventListener("click", function () {
      if (!confirm("Delete the node " + entry.data.name + "?")) return;
      mutate(item, "nodeDelete", "NodeDeleteInput", { id: id }, "", null);
    });
    var logs = el("details", { class: "logs" }, [el("summary", { text: "Last log lines" }),
      el("pre", { tabindex: "0" })]);
    logs.addEventListener("toggle", function () { if (logs.open) loadLogs(entry); });
    var item = el("li", { class: "node", "data-id": id }, [
      el("div", { class: "head" }, [el("strong", { class: "name" }), el("span", { class: "role muted" }),
        el("span", { class: "status" }), remove]),
      el("p", { class: "reason" }),
      el("p", { class: "pod muted" }),
      el("p", { class: "chain muted" }),
      el("details", { class: "history" }, [el("summary", { text: "Status history" }), el("ol")]),
      logs,
      el("p", { class: "error", role: "alert" }),
    ]);
    remove.setAttribute("aria-label", "Delete node " + data.name);
    entry = { data: data, el: item, logs: logs };
    network.nodes.set(id, entry);
    network.el.querySelector(".nodes").appendChild(item);
    return entry;
  }

  function upsertNode(networkId, data) {
    if (!networks.has(networkId)) return;
    var entry = nodeEntry(networkId, data);
    entry.data = data;
    var item = entry.el;
    item.setAttribute("data-status", data.status);
    item.querySelector(".name").textContent = data.name;
    item.querySelector(".role").textContent = data.role.toLowerCase() + (data.ip ? " · " + data.ip : "");
    item.querySelector(".status").replaceChildren(badge(data.status));
    item.querySelector(".reason").textContent = data.statusReason || "";
    item.querySelector(".pod").textContent = podText(data.pod);
    item.querySelector(".chain").textContent = chainText(data.chain);
    item.querySelector(".history ol").replaceChildren.apply(
      item.querySelector(".history ol"),
      (data.statusHistory || []).map(function (change) {
        return el("li", { text: time(change.at) + " " + change.status +
          (change.reason ? ": " + change.reason : "") });
      })
    );
    if (entry.logs.open) loadLogs(entry);
  }

  function removeNode(networkId, nodeId) {
    var network = networks.get(networkId);
    var entry = network && network.nodes.get(nodeId);
    if (!entry) return;
    entry.el.remove();
    network.nodes.delete(nodeId);
  }

  async function loadLogs(entry) {
    var pre = entry.logs.querySelector("pre");
    try {
      var data = await gql("query Logs($id: ID!) { node(id: $id) { ... on Node { logs(tail: 20) } } }",
        { id: entry.data.id });
      var lines = data.node ? data.node.logs : [];
      pre.textContent = lines.length ? lines.join("\n") : "(no log lines: the node has no pod yet)";
    } catch (error) {
      if (error instanceof AuthProblem) failed(error);
      else pre.textContent = "Could not read the log: " + error.message;
    }
  }

  // -- changes ------------------------------------------------------------------------------

  async function mutate(scope, field, inputType, input, select, done) {
    var error = scope.querySelector(".error");
    var buttons = scope.querySelectorAll("button");
    error.textContent = "";
    buttons.forEach(function (b) { b.disabled = true; });
    try {
      var data = await gql("mutation Change($input: " + inputType + "!) { " + field +
        "(input: $input) { " + (select || "") + " " + USER_ERRORS + " } }", { input: input });
      var payload = data[field];
      if (payload.userErrors.length) {
        error.textContent = payload.userErrors.map(function (e) { return e.message; }).join("; ");
      } else if (done) {
        done(payload);
      }
    } catch (problem) {
      if (problem instanceof AuthProblem) failed(problem);
      else error.textContent = problem.message;
    } finally {
      buttons.forEach(function (b) { b.disabled = false; });
    }
  }

  function formInput(form) {
    var input = {};
    new FormData(form).forEach(function (value, key) { input[key] = value; });
    return input;
  }

  function apply(event) {
    if (buffered) { buffered.push(event); return; }
    var network = event.network;
    switch (event.kind) {
      case "NETWORK_CREATED":
      case "NETWORK_UPDATED":
        upsertNetwork(network);
        break;
      case "NETWORK_DELETED":
        removeNetwork(network.id);
        break;
      case "NODE_ADDED":
      case "NODE_UPDATED":
        if (network) upsertNetwork(network);
        if (network && event.node) upsertNode(network.id, event.node);
        break;
      case "NODE_REMOVED":
        if (network && event.node) removeNode(network.id, event.node.id);
        break;
    }
  }

  async function reload() {
    buffered = buffered || [];
    try {
      var data = await gql(LIST);
      $("who").textContent = "Tenant " + data.viewer.tenant.name + " · " + data.viewer.role;
      var seen = new Set();
      data.networks.edges.forEach(function (edge) { seen.add(edge.node.id); upsertNetwork(edge.node); });
      networks.forEach(function (_, id) { if (!seen.has(id)) removeNetwork(id); });
      showAlert("");
    } finally {
      var later = buffered;
      buffered = null;
      later.forEach(apply);
    }
  }

  function live() {
    client = graphqlWs.createClient({
      url: wsUrl.href,
      lazy: false,
      retryAttempts: Infinity,
      retryWait: function (retries) {
        return new Promise(function (resolve) { setTimeout(resolve, Math.min(500 * (retries + 1), 3000)); });
      },
      shouldRetry: function (event) { return !(event && event.code === 4403); },
      connectionParams: function () {
        return { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
      },
      on: {
        connected: function () {
          setConn("Live", "ok");
          reload().catch(failed);
        },
        closed: function (event) {
          if (!client) return;
          if (event && event.code === 4403) {
            signOut("The server closed the live connection: " + (event.reason || "token refused") +
              ". Sign in with a valid token.");
          } else {
            setConn("Connection lost: reconnecting…", "lost");
          }
        },
      },
      onNonLazyError: function () {},
    });
    stopLive = client.subscribe({ query: LIVE }, {
      next: function (result) {
        if (result.errors) showAlert(result.errors.map(function (e) { return e.message; }).join("; "));
        else apply(result.data.networkChanged);
      },
      error: function (error) {
        if (error && error.code === 4403) return; // handled by "closed"
        var said = Array.isArray(error)
          ? error.map(function (e) { return e.message; }).join("; ")
          : (error && (error.message || error.reason)) || String(error);
        showAlert("The live updates stopped: " + said + ". Reload the page to try again.");
        setConn("Not live", "lost");
      },
      complete: function () {},
    });
  }

  // -- signing in and out -------------------------------------------------------------------

  function stop() {
    var old = client;
    client = null;
    if (stopLive) stopLive();
    stopLive = null;
    if (old) old.dispose();
  }

  function signOut(message) {
    stop();
    sessionStorage.removeItem(TOKEN_KEY);
    networks.forEach(function (entry) { entry.el.remove(); });
    networks.clear();
    $("app").hidden = true;
    $("signout").hidden = true;
    $("signin").hidden = false;
    $("who").textContent = "";
    setConn("", "");
    showAlert(message || "");
    $("token").focus();
  }

  async function start() {
    $("signin").hidden = true;
    $("app").hidden = false;
    $("signout").hidden = false;
    setConn("Connecting…", "");
    try {
      await reload();
    } catch (error) {
      failed(error);
      return;
    }
    live();
  }

  $("signin").addEventListener("submit", function (event) {
    event.preventDefault();
    var token = $("token").value.trim();
    $("token").value = "";
    sessionStorage.setItem(TOKEN_KEY, token);
    showAlert("");
    start();
  });
  $("signout").addEventListener("click", function () { signOut("Signed out."); });

  $("create").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.target;
    mutate(form, "networkCreate", "NetworkCreateInput", formInput(form), "network { " + NETWORK + " }",
      function (payload) { form.reset(); if (payload.network) upsertNetwork(payload.network); });
  });
  $("join").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.target;
    mutate(form, "networkJoin", "NetworkJoinInput", formInput(form), "network { " + NETWORK + " }",
      function (payload) { form.reset(); if (payload.network) upsertNetwork(payload.network); });
  });

  if (sessionStorage.getItem(TOKEN_KEY)) start();
  else $("token").focus();
})();
