/*
 * show.js: the staff pages' view of a game (host console, big screen). Load after common.js.
 *
 *   const show = new Quiz.StaffShow(cfg, { onChange(show) {}, badge: element, standings: false });
 *   show.start();
 *
 * The staff session authorizes the WebSocket (USER mode; same origin, so the auth object
 * only carries `host`). It subscribes to the game and leaderboard channels and, after
 * every (re)connect, catches up with the staff-only api.host_game (questions with their
 * right answers, state, counts, the server's clock) and api.leaderboard: the page renders
 * the game as it is now, whatever it saw before. With `standings`, also api.state, whose
 * leaderboard_before is the board as the open question opened (for a page that holds the
 * live board until the reveal).
 */
(function (root) {
  "use strict";

  const Q = root.Quiz;

  class StaffShow {
    constructor(cfg, { onChange, badge, standings }) {
      this.cfg = cfg;
      this.onChange = onChange || (() => {});
      this.badge = badge;
      this.withStandings = Boolean(standings);
      this.state = cfg.state;
      this.index = -1;
      this.questions = [];
      this.question = null; // the current question, with correct_choice
      this.counts = null; // answer counts, from the reveal
      this.answered = null; // answers to the current question so far
      this.players = 0;
      this.online = null; // players connected now, from the presence channel
      this.top = [];
      this.boardLoaded = false; // `top` came from the server (a snapshot or a live event)
      this.boardBefore = null; // leaderboard_before of the open question, with `standings`
      this.deadline = null; // performance.now() at which the question closes
      this.autoReveal = false; // the game reveals by itself when time is up
      this.autoNext = null; // seconds from a reveal to the next step, or null
      this.nextGame = null; // the join code of the rematch, once the host started it
      this.client = null;
      this.liveBoard = false;
      this.refreshing = null;
    }

    start() {
      this.client = new RealtimeClient({
        httpEndpoint: this.cfg.event_endpoint,
        auth: {}, // the session cookie authorizes (USER mode)
        maxRetryDelayMs: Q.RETRY_CAP_MS,
        onStateChange: Q.connectionBadge(this.badge, (state) => {
          if (state === "connected") this.refresh();
        }),
        onError: (error) => console.warn("realtime:", error),
      });
      const onSubError = (error) => console.warn("subscription refused:", error);
      const subs = [
        this.client.subscribe(this.cfg.channels.game, (event) => this._onGame(event), onSubError),
        this.client.subscribe(this.cfg.channels.leaderboard, (event) => this._onBoard(event), onSubError),
        // Staff only: live counts of players and answers, sent whenever they change.
        this.client.subscribe(this.cfg.channels.host, (event) => this._onProgress(event), onSubError),
      ];
      // Who is connected to the game now (realtime's presence channel, PROTOCOL §12).
      if (this.cfg.channels.presence) {
        subs.push(this.client.subscribe(this.cfg.channels.presence, (event) => this._onPresence(event), onSubError));
      }
      this.refresh();
      // An event published after that snapshot but before a subscription was acknowledged is in
      // neither (a player joining while the page loads): once every subscription is, catch up again.
      Promise.allSettled(subs.map((sub) => sub.ready)).then(() => {
        const again = () => this.refresh();
        (this.refreshing || Promise.resolve()).then(again, again);
      });
    }

    remainingMs() {
      return this.deadline === null ? 0 : Math.max(0, this.deadline - performance.now());
    }

    get total() {
      return this.questions.length;
    }

    get hasNext() {
      return this.index + 1 < this.questions.length;
    }

    /** Catch up from the server: the staff game JSON and the leaderboard. */
    refresh() {
      if (this.refreshing) return this.refreshing;
      this.liveBoard = false;
      this.refreshing = this._refresh().finally(() => (this.refreshing = null));
      return this.refreshing;
    }

    async _refresh() {
      const [game, board, state] = await Promise.all([
        Q.fetchJSON(this.cfg.api.host_game, { cache: "no-store" }),
        Q.fetchJSON(this.cfg.api.leaderboard, { cache: "no-store" }),
        this.withStandings ? Q.fetchJSON(this.cfg.api.state, { cache: "no-store" }) : null,
      ]);
      if (game.status === 403) {
        root.location.reload(); // the session ended: the page sends to the login
        return;
      }
      if (state && state.ok && state.body) this.boardBefore = state.body.leaderboard_before || null;
      if (game.ok && game.body) this._applyGame(game.body);
      if (board.ok && board.body && !this.liveBoard) this._applyBoard(board.body);
      this.onChange(this);
    }

    _applyGame(data) {
      this.questions = data.questions || [];
      this.autoReveal = Boolean(data.auto_reveal);
      this.autoNext = data.auto_next === undefined ? null : data.auto_next;
      this.nextGame = data.next_game || this.nextGame;
      // Never roll back what a live event already said.
      if (Q.progress(data.state, data.question_index) < Q.progress(this.state, this.index)) return;
      this.state = data.state;
      this.index = data.question_index;
      this.question = this.questions.find((q) => q.id === data.question_id) || null;
      if (data.state === "question" && data.closes_at) {
        const remaining = Q.parseTime(data.closes_at) - Q.parseTime(data.server_time);
        this.deadline = performance.now() + Math.max(0, remaining);
      } else {
        this.deadline = null;
      }
      if (data.state === "reveal" || data.state === "finished") this.counts = data.counts;
      else this.counts = null;
      this.answered = data.counts ? data.counts.reduce((a, b) => a + b, 0) : null;
    }

    _onGame(event) {
      if (!event || typeof event !== "object") return;
      if (event.type === "question") {
        const q = event.question;
        this.state = "question";
        this.index = q.index;
        this.question = this.questions.find((x) => x.id === q.id) || { ...q, correct_choice: null };
        this.deadline = performance.now() + (event.closes_in || 0) * 1000;
        this.counts = null;
        this.answered = 0;
        if (!this.questions.some((x) => x.id === q.id)) this.refresh(); // an unknown question: reload the set
      } else if (event.type === "reveal") {
        this.state = "reveal";
        this.deadline = null;
        this.counts = event.counts || [];
        this.answered = this.counts.reduce((a, b) => a + b, 0);
        if (this.question && this.question.id === event.question_id) {
          this.question = { ...this.question, correct_choice: event.correct_choice };
        }
      } else if (event.type === "state") {
        this.state = event.state;
        if (event.state !== "question") this.deadline = null;
      } else if (event.type === "next_game") {
        this.nextGame = event.next_game;
      } else {
        return;
      }
      this.onChange(this);
    }

    _onBoard(event) {
      if (!event || event.type !== "leaderboard") return;
      this.liveBoard = true;
      this._applyBoard(event);
      this.onChange(this);
    }

    _onPresence(event) {
      if (!event || event.type !== "occupancy") return;
      // Players online when the namespace lists members; above its cap, connections (staff included).
      this.online = Array.isArray(event.members)
        ? event.members.filter((member) => member.player !== undefined).length
        : event.connections;
      this.onChange(this);
    }

    _onProgress(event) {
      if (!event || event.type !== "progress") return;
      this.players = event.players || this.players;
      if (this.question && event.question_id === this.question.id && event.answered !== null) {
        this.answered = Math.max(this.answered || 0, event.answered);
      }
      this.onChange(this);
    }

    _applyBoard(board) {
      this.boardLoaded = true;
      this.players = board.players || 0;
      this.top = board.top || [];
      if (this.question && board.question_id === this.question.id && board.answered !== null) {
        this.answered = Math.max(this.answered || 0, board.answered);
      }
      if (board.final && this.state !== "finished") this.state = "finished";
    }
  }

  Q.StaffShow = StaffShow;
})(window);
