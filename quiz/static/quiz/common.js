/*
 * common.js: helpers shared by the quiz pages (player, host console, big screen).
 *
 * Load after realtime.js; gives window.Quiz. Everything that comes from the
 * network is inserted as text (textContent), never parsed as HTML.
 */
(function (root) {
  "use strict";

  const LETTERS = "ABCDEF";

  // The longest wait between two reconnection attempts while the page is looked at (realtime.js
  // waits up to 5 s by default). A phone whose link dropped without the browser noticing (a
  // proxy, a Wi-Fi hand-over) is back within a second of the network; the first retry goes at
  // once anyway. The price, a crowd retrying every second during an outage, is attempts that
  // fail fast, and the server's connect admission spreads the return.
  const RETRY_CAP_MS = 1000;

  const $ = (id) => document.getElementById(id);

  /** The page's configuration, rendered by the view with json_script. */
  function config() {
    return JSON.parse($("quiz-config").textContent);
  }

  /** el("li", {className: "x", dataset: {a: 1}}, "text", child) */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "style") node.setAttribute("style", value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function ordinal(n) {
    const tens = n % 100;
    if (tens >= 11 && tens <= 13) return n + "th";
    return n + ({ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th");
  }

  const number = (n) => Number(n || 0).toLocaleString();

  /** "1 player", "2 players": `word` is the singular, `many` the plural (an "s" added by default). */
  function plural(n, word, many) {
    return `${number(n)} ${Number(n) === 1 ? word : many || word + "s"}`;
  }

  /**
   * Show a count in the element `id` and make its label agree: every element with
   * data-count-of="<id>" shows its data-one for 1 and its data-other for anything else.
   */
  function setCount(id, n) {
    $(id).textContent = number(n);
    for (const label of document.querySelectorAll(`[data-count-of="${id}"]`)) {
      label.textContent = Number(n) === 1 ? label.dataset.one : label.dataset.other;
    }
  }

  /** An ISO 8601 time from the server (Python's isoformat: microseconds) as epoch ms, or NaN. */
  function parseTime(text) {
    if (!text) return NaN;
    return Date.parse(String(text).replace(/(\.\d{3})\d+/, "$1"));
  }

  /** Retry-After as milliseconds (delta-seconds or an HTTP date), 0 if absent. */
  function retryAfterMs(response) {
    const value = response && response.headers.get("retry-after");
    if (!value) return 0;
    const seconds = Number(value);
    if (!Number.isNaN(seconds)) return Math.max(0, seconds * 1000);
    const at = Date.parse(value);
    return Number.isNaN(at) ? 0 : Math.max(0, at - Date.now());
  }

  /** fetch + JSON: {ok, status, body, response}; network failures give status 0. */
  async function fetchJSON(url, options) {
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", ...options });
    } catch (error) {
      return { ok: false, status: 0, body: null, response: null, error };
    }
    const body = await response.json().catch(() => null);
    return { ok: response.ok, status: response.status, body, response };
  }

  function errorMessage(result, fallback) {
    const error = result && result.body && result.body.error;
    if (error && error.message) return error.message;
    if (result && result.status === 0) return "The game can't be reached. Check your connection.";
    return fallback || `Something went wrong (HTTP ${result ? result.status : "?"}).`;
  }

  /**
   * A countdown to a deadline on this page's monotonic clock. Updates `text`
   * (whole seconds left) and `bar` (width shrinking from `totalMs`), and calls
   * onEnd once at zero.
   */
  class Countdown {
    constructor({ text, bar, onEnd }) {
      this.text = text;
      this.bar = bar;
      this.onEnd = onEnd;
      this.timer = null;
    }

    start(remainingMs, totalMs) {
      this.stop();
      this.deadline = performance.now() + Math.max(0, remainingMs);
      this.total = Math.max(totalMs || remainingMs, 1);
      this.ended = false;
      this.tick();
      this.timer = setInterval(() => this.tick(), 100);
    }

    remaining() {
      return this.timer === null ? 0 : Math.max(0, this.deadline - performance.now());
    }

    tick() {
      const left = Math.max(0, this.deadline - performance.now());
      if (this.text) this.text.textContent = String(Math.ceil(left / 1000));
      if (this.bar) {
        this.bar.style.width = ((100 * left) / this.total).toFixed(2) + "%";
        this.bar.classList.toggle("hurry", left < 5000);
      }
      if (left <= 0 && !this.ended) {
        this.ended = true;
        clearInterval(this.timer);
        this.timer = null;
        if (this.onEnd) this.onEnd();
      }
    }

    stop() {
      if (this.timer !== null) clearInterval(this.timer);
      this.timer = null;
    }
  }

  /**
   * onStateChange for RealtimeClient that keeps a status badge up to date. The texts are short
   * and fixed (retries come within seconds, or at once when the network returns): the badge
   * never grows enough to wrap a phone's header.
   */
  function connectionBadge(badge, onChange) {
    return (state, detail) => {
      const offline = state === "reconnecting" && navigator.onLine === false;
      badge.dataset.state = offline ? "offline" : state;
      badge.textContent = offline
        ? "offline"
        : { connecting: "connecting…", connected: "live", reconnecting: "reconnecting…", closed: "offline" }[
            state
          ] || state;
      if (onChange) onChange(state, detail || {});
    };
  }

  /** Render a leaderboard's top rows into an <ol>; `meId` is highlighted. */
  function renderTop(list, top, meId) {
    list.replaceChildren(
      ...(top || []).map((row) =>
        el(
          "li",
          { className: row.player_id === meId ? "me" : "" },
          el("span", { className: "rank" }, row.rank),
          el("span", { className: "name" }, row.nickname),
          el("span", { className: "score" }, number(row.score))
        )
      )
    );
  }

  /**
   * Where a game is in its show, as one comparable number, so an older snapshot
   * (a cached GET) never rolls back what a live event already said.
   */
  function progress(state, index) {
    switch (state) {
      case "draft":
        return 0;
      case "lobby":
        return 1;
      case "question":
        return 2 + 2 * Math.max(0, index);
      case "reveal":
        return 3 + 2 * Math.max(0, index);
      case "finished":
        return Number.MAX_SAFE_INTEGER;
      default:
        return -1;
    }
  }

  function stateLabel(state) {
    return (
      {
        draft: "Not open yet",
        lobby: "Lobby",
        question: "Question open",
        reveal: "Answer revealed",
        finished: "Finished",
      }[state] || state
    );
  }

  root.Quiz = {
    LETTERS,
    RETRY_CAP_MS,
    $,
    config,
    el,
    ordinal,
    number,
    plural,
    setCount,
    parseTime,
    retryAfterMs,
    fetchJSON,
    errorMessage,
    Countdown,
    connectionBadge,
    renderTop,
    progress,
    stateLabel,
  };
})(window);
