/*
 * play.js: the player page (/quiz/<code>/).
 *
 * Join:   POST api.join {nickname} → 201 {player_id, nickname, token, channels, rejoin_code}. A 429 or 503
 *         (the crowd is big) is retried with exponential backoff and full jitter, never before
 *         Retry-After. The token is kept in localStorage per game code: a reload resumes.
 * Rejoin: the page shows the player's rejoin code; on another device (or with its storage lost) a
 *         taken nickname offers POST api.rejoin {nickname, rejoin_code} → 200, as a join's reply.
 * Live:   a RealtimeClient authorized with the token (CUSTOM mode), subscribed to the game,
 *         the leaderboard and the player's own channel.
 * Catch-up is state, not history: after every (re)connect and on every load the page renders
 *         the game as it is now from GET api.state, api.leaderboard and api.me (the player's
 *         answers, score and rank), whatever it saw or missed before; no event is replayed.
 * Answer: publish {question_id, choice} to channels.answers over the WebSocket; if that
 *         cannot be done (no connection, no reply), POST api.answers with the token.
 * Again:  when the host starts a rematch (a next_game event, or next_game in a finished game's
 *         state), "Play again" joins it under the same nickname and opens its page.
 */
(function () {
  "use strict";

  const root = window;
  const Q = root.Quiz;
  const { $, el } = Q;
  const cfg = Q.config();
  const STORAGE_KEY = "quiz:player:" + cfg.code;

  const JOIN_BACKOFF_BASE_MS = 1000;
  const JOIN_BACKOFF_CAP_MS = 16000;
  const PUBLISH_TIMEOUT_MS = 4000;

  // {player_id, nickname, token, channels, score, rank, players, answers: {qid: choice},
  //  results: {qid: {correct, points}} (the scored ones)}
  let me = load();
  let client = null;
  let joinAttempt = null;
  // The server's clock minus ours: from the page's render time, then from every question event.
  let clockOffsetMs = Q.parseTime(cfg.server_time) - Date.now() || 0;
  let draftPoll = null;
  let boardSeen = false; // a live leaderboard arrived since the last (re)connect
  const LOST = "Your place in this game was lost. Join again with a nickname.";

  // What the page knows of the show.
  const game = {
    state: cfg.state,
    question: null, // the public question (no answer)
    index: -1,
    reveal: null, // the reveal event of `question`
    pendingScore: null, // a score heard before its question's reveal
    pendingBoard: null, // a leaderboard heard while a question is open
    answering: false,
  };

  const countdown = new Q.Countdown({
    text: $("q-seconds"),
    bar: $("q-bar"),
    onEnd: () => {
      if (game.state !== "question") return;
      lockChoices();
      if (!answeredChoice()) setAnswerStatus("Time's up! Waiting for the answer…", "muted");
    },
  });

  // -- storage -------------------------------------------------------------------

  function load() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORAGE_KEY));
      if (!saved || !saved.token || !saved.channels) return null;
      saved.answers = saved.answers || {};
      saved.results = saved.results || {};
      return saved;
    } catch {
      return null;
    }
  }

  function save() {
    try {
      if (me) localStorage.setItem(STORAGE_KEY, JSON.stringify(me));
    } catch {
      // Private mode or full storage: the game still works until a reload.
    }
  }

  function forget() {
    try {
      localStorage.removeItem(STORAGE_KEY);
    } catch {
      // nothing stored
    }
  }

  // -- views ---------------------------------------------------------------------

  function showView(name) {
    for (const view of ["join", "closed", "game"]) $("view-" + view).hidden = view !== name;
  }

  function showClosed(title, text) {
    $("closed-title").textContent = title;
    $("closed-text").textContent = text || "";
    showView("closed");
  }

  function setPhase(phase) {
    $("stage").dataset.phase = phase;
  }

  // -- joining -------------------------------------------------------------------

  function showJoin(message) {
    showView("join");
    setJoinBusy(false);
    $("rejoin-form").hidden = true;
    $("join-error").hidden = !message;
    $("join-error").textContent = message || "";
    const hint = $("join-hint");
    hint.hidden = game.state !== "draft";
    hint.textContent = "The host hasn't opened this game yet. You can join as soon as they do.";
    $("nickname").focus();
  }

  function setJoinBusy(busy, status) {
    $("join-button").disabled = busy;
    $("nickname").disabled = busy;
    $("join-wait").hidden = !busy;
    $("join-status").textContent = status || "";
  }

  const sleep = (ms, attempt) =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      attempt.cancel = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  async function join(nickname) {
    const attempt = (joinAttempt = { cancelled: false, cancel: null });
    $("join-error").hidden = true;
    setJoinBusy(true, "Joining…");
    for (let failures = 0; !attempt.cancelled; ) {
      const result = await Q.fetchJSON(cfg.api.join, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ nickname }),
      });
      if (attempt.cancelled) return;
      if (result.status === 201 && result.body && result.body.token) return joined(result.body);
      const crowded = result.status === 429 || result.status === 503;
      const retryable = crowded || result.status === 0 || result.status >= 500;
      if (!retryable) {
        joinAttempt = null;
        const code = result.body && result.body.error && result.body.error.code;
        if (code === "game_not_found") return showClosed("No such game", "Check the code and try again.");
        if (code === "game_not_joinable" && game.state === "finished") return showFinishedBeforeJoin();
        if (code === "nickname_taken") return showRejoin(nickname);
        return showJoin(Q.errorMessage(result));
      }
      // Exponential backoff with full jitter, never sooner than Retry-After.
      failures += 1;
      const cap = Math.min(JOIN_BACKOFF_CAP_MS, JOIN_BACKOFF_BASE_MS * 2 ** (failures - 1));
      const waitMs = Q.retryAfterMs(result.response) + Math.random() * cap;
      const until = Date.now() + waitMs;
      const show = () => {
        const seconds = Math.max(1, Math.ceil((until - Date.now()) / 1000));
        setJoinBusy(
          true,
          crowded
            ? `The crowd is big, retrying in ${seconds}s…`
            : `Can't reach the game, retrying in ${seconds}s…`
        );
      };
      show();
      const ticker = setInterval(show, 250);
      await sleep(waitMs, attempt);
      clearInterval(ticker);
      if (!attempt.cancelled) setJoinBusy(true, "Joining…");
    }
  }

  function joined(body) {
    joinAttempt = null;
    me = {
      player_id: body.player_id,
      nickname: body.nickname,
      token: body.token,
      channels: body.channels,
      rejoin_code: body.rejoin_code,
      score: 0,
      rank: null,
      players: null,
      answers: {},
      results: {},
    };
    save();
    enterGame();
  }

  // The nickname is taken: by this player on another device, perhaps.
  function showRejoin(nickname) {
    showJoin("That nickname is taken in this game.");
    $("rejoin-nickname").textContent = nickname;
    $("rejoin-form").hidden = false;
    $("rejoin-form").dataset.nickname = nickname;
    $("rejoin-error").hidden = true;
    $("rejoin-code").focus();
  }

  $("rejoin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const rejoinCode = $("rejoin-code").value.trim();
    if (!rejoinCode) return;
    $("rejoin-button").disabled = true;
    const result = await Q.fetchJSON(cfg.api.rejoin, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ nickname: $("rejoin-form").dataset.nickname, rejoin_code: rejoinCode }),
    });
    $("rejoin-button").disabled = false;
    if (result.status === 200 && result.body && result.body.token) {
      $("rejoin-form").hidden = true;
      return joined(result.body);
    }
    $("rejoin-error").hidden = false;
    $("rejoin-error").textContent = Q.errorMessage(result);
  });

  function showFinishedBeforeJoin() {
    showClosed("This game is over", "Thanks for watching! Ask the host for the next game's code.");
  }

  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const nickname = $("nickname").value.trim();
    if (!nickname) return;
    join(nickname);
  });

  $("join-cancel").addEventListener("click", () => {
    if (joinAttempt) {
      joinAttempt.cancelled = true;
      if (joinAttempt.cancel) joinAttempt.cancel();
      joinAttempt = null;
    }
    showJoin();
  });

  // -- playing -------------------------------------------------------------------

  const HTTP_CATCH_UP_MS = 1500;
  const RETRY_CATCH_UP_MS = 1000;

  function enterGame() {
    clearInterval(draftPoll);
    showView("game");
    $("me-name").textContent = me.nickname;
    renderMe();
    if (game.state === "question" || game.state === "reveal") {
      // The snapshot fetched once connected tells what is on.
      game.state = "lobby";
      showWaiting("Get ready…", "Catching up with the game…");
    } else {
      setPhase(game.state === "finished" ? "finished" : "lobby");
    }
    connect();
    // The catch-up runs once connected; a socket slow to come up must not leave the page blank.
    const connecting = client;
    setTimeout(() => {
      if (client === connecting && client.state !== "connected") catchUp();
    }, HTTP_CATCH_UP_MS);
  }

  function connect() {
    if (client) client.close();
    client = new RealtimeClient({
      httpEndpoint: cfg.event_endpoint,
      auth: { authorization: me.token },
      maxRetryDelayMs: Q.RETRY_CAP_MS,
      onStateChange: Q.connectionBadge($("conn"), (state, detail) => {
        if (state === "connected") catchUp();
        if (state === "closed" && detail.error) onRefused(detail.error);
      }),
      onError: (error) => console.warn("realtime:", error),
    });
    const onSubError = (error) => onRefused(error);
    client.subscribe(me.channels.game, onGameEvent, onSubError);
    client.subscribe(me.channels.leaderboard, onBoard, onSubError);
    client.subscribe(me.channels.player, onMine, onSubError);
  }

  // The token was refused (the game is gone, or the server forgot the player).
  function onRefused(error) {
    console.warn("refused:", error);
    if (error && error.errorType === "UnauthorizedException") {
      leave(LOST);
    } else {
      $("conn").textContent = "offline";
    }
  }

  function leave(message) {
    if (client) client.close();
    client = null;
    countdown.stop();
    forget();
    me = null;
    $("conn").dataset.state = "idle";
    $("conn").textContent = "not connected";
    showJoin(message);
  }

  $("leave").addEventListener("click", () => {
    if (window.confirm("Leave this game? Your score stays, but this device forgets you.")) leave();
  });

  // Catch up: render the game as it is now. The events sent while away are gone, and a page
  // that saw some of them must end up exactly where a freshly loaded one would.
  let catchUpSeq = 0;
  async function catchUp() {
    const seq = ++catchUpSeq;
    boardSeen = false;
    const [state, board, standing] = await Promise.all([
      Q.fetchJSON(cfg.api.state, { cache: "no-store" }),
      Q.fetchJSON(cfg.api.leaderboard, { cache: "no-store" }),
      Q.fetchJSON(cfg.api.me, { cache: "no-store", headers: { authorization: `Bearer ${me.token}` } }),
    ]);
    if (seq !== catchUpSeq || !me) return;
    if (state.status === 404) return showClosed("This game is gone", "The host removed it.");
    if (errorCode(standing) === "invalid_player_token") return leave(LOST);
    // The state and the leaderboard are cached apart on the server (for CACHE_TTL): one can be a
    // moment older than the other, e.g. the board from before the reveal the state announces.
    const disagree = state.ok && board.ok && state.body && board.body && !sameMoment(state.body, board.body);
    if (!state.ok || !board.ok || !standing.ok || disagree) {
      // A read failed (the network is still settling), or the two are out of step: try again soon
      // rather than stay behind (by then the server's copies have been refreshed).
      const again = () => seq === catchUpSeq && client && client.state === "connected" && catchUp();
      setTimeout(again, RETRY_CATCH_UP_MS);
    }
    const mine = standing.ok && standing.body ? standing.body : null;
    if (mine) {
      me.rejoin_code = mine.rejoin_code || me.rejoin_code;
      learnAnswers(mine.answers);
      renderMe();
    }
    if (state.ok && state.body) applySnapshot(state.body, mine);
    if (board.ok && board.body && !boardSeen) onBoard(board.body, true);
    // The player's own standing is read uncached: it wins over their row of a cached board. (While a
    // question is open the board's row is the standing before it: holdStanding took care of that.)
    if (mine && game.state !== "question") applyStanding(mine);
  }

  // A state snapshot and a leaderboard that describe the same moment of the show.
  function sameMoment(snapshot, board) {
    const questionId = snapshot.question ? snapshot.question.id : null;
    if (snapshot.state === "finished") return board.state === "finished";
    return board.state === snapshot.state && (questionId === null || board.question_id === questionId);
  }

  const errorCode = (result) => result && result.body && result.body.error && result.body.error.code;

  // The server's record of this player's answers wins over what this device remembers.
  function learnAnswers(answers) {
    for (const answer of answers || []) {
      me.answers[answer.question_id] = answer.choice;
      if (answer.scored) me.results[answer.question_id] = { correct: answer.correct, points: answer.points };
    }
    save();
  }

  function applySnapshot(snapshot, mine) {
    const question = snapshot.question;
    const index = question ? question.index : game.index;
    // A snapshot older than what a live event already said (the GET is cached briefly).
    if (Q.progress(snapshot.state, index) < Q.progress(game.state, game.index)) return;
    if (snapshot.state === "finished") {
      if (mine) applyStanding(mine);
      if (snapshot.next_game) invite(snapshot.next_game);
      return onFinished();
    }
    if (snapshot.state === "question" && question) {
      if (game.state !== "question" || !game.question || game.question.id !== question.id) {
        const closesAt = Q.parseTime(snapshot.closes_at);
        const remainingMs = Number.isNaN(closesAt)
          ? question.time_limit * 1000
          : closesAt - (Date.now() + clockOffsetMs);
        showQuestion(question, remainingMs);
      } else if (!game.answering && answeredChoice() !== undefined) {
        // Answered, but the reply was lost with the connection: the server has it.
        markChosen(answeredChoice());
        setAnswerStatus("Answer locked in", "ok");
      }
      if (mine) holdStanding(mine, question);
      // While the question is open, the standings as it opened (the live ones wait for the reveal).
      if (snapshot.leaderboard_before) renderBoard(snapshot.leaderboard_before);
      return;
    }
    if (snapshot.state === "reveal" && question) {
      if (game.state !== "reveal" || !game.question || game.question.id !== question.id) {
        game.question = question;
        game.index = question.index;
        renderQuestion(question);
        onReveal({
          type: "reveal",
          question_id: question.id,
          correct_choice: snapshot.correct_choice,
          counts: snapshot.counts,
        });
      }
      if (mine) applyStanding(mine);
      showPoints();
      return;
    }
    if (snapshot.state === "lobby") {
      game.state = "lobby";
      setPhase("lobby");
      if (mine) applyStanding(mine);
    }
  }

  function applyStanding(mine) {
    me.score = mine.score;
    me.rank = mine.rank;
    me.players = mine.players;
    save();
    renderMe();
  }

  // During a question, the player's points for it are the verdict: they wait for the reveal,
  // as the live score event does. The rank shown stays the one from before the question (the
  // leaderboard_before rendered next has it when the player is in its top).
  function holdStanding(mine, question) {
    const answer = mine.answers.find((row) => row.question_id === question.id);
    const earned = answer && answer.scored ? answer.points : 0;
    me.score = mine.score - earned;
    me.players = mine.players;
    if (!earned) me.rank = mine.rank;
    if (answer && answer.scored && !game.pendingScore) {
      game.pendingScore = {
        type: "score",
        question_id: question.id,
        correct: answer.correct,
        delta: answer.points,
        score: mine.score,
        rank: mine.rank,
        players: mine.players,
      };
    }
    save();
    renderMe();
  }

  function onGameEvent(event) {
    if (!event || typeof event !== "object") return;
    if (event.type === "question") {
      if (event.closes_at && typeof event.closes_in === "number") {
        clockOffsetMs = Q.parseTime(event.closes_at) - event.closes_in * 1000 - Date.now();
      }
      showQuestion(event.question, (event.closes_in || 0) * 1000);
    } else if (event.type === "reveal") {
      onReveal(event);
      // A reveal of a question this page never saw: fetch it, with the answer and the verdict.
      if (!game.question || game.question.id !== event.question_id) catchUp();
    } else if (event.type === "next_game") {
      invite(event.next_game);
    } else if (event.type === "state") {
      if (event.state === "finished") onFinished();
      else if (event.state === "lobby" && Q.progress(game.state, game.index) < Q.progress("lobby")) {
        game.state = "lobby";
        setPhase("lobby");
      }
    }
  }

  function showWaiting(title, text) {
    countdown.stop();
    $("waiting-title").textContent = title;
    $("waiting-text").textContent = text;
    setPhase("waiting");
  }

  const answeredChoice = () =>
    game.question && me && me.answers ? me.answers[game.question.id] : undefined;

  function showQuestion(question, remainingMs) {
    settlePending(false);
    game.state = "question";
    game.question = question;
    game.index = question.index;
    game.reveal = null;
    game.answering = false;
    setPhase("question");
    renderQuestion(question);
    const chosen = answeredChoice();
    if (chosen !== undefined) {
      markChosen(chosen);
      setAnswerStatus("Answer locked in", "ok");
    } else {
      setAnswerStatus("");
    }
    countdown.start(remainingMs, question.time_limit * 1000);
    if (remainingMs <= 0) countdown.tick();
  }

  // The question and its choice buttons, as they are before anyone answers.
  function renderQuestion(question) {
    $("q-number").textContent = `Question ${question.index + 1} of ${question.total}`;
    $("q-points").textContent = `${Q.number(question.points)} points`;
    $("q-text").textContent = question.text;
    $("result").hidden = true;
    $("choices").replaceChildren(
      ...question.choices.map((text, index) => {
        const button = el(
          "button",
          { type: "button", className: `choice c${index}`, dataset: { index } },
          el("span", { className: "letter" }, Q.LETTERS[index]),
          el("span", { className: "text" }, text),
          el("span", { className: "count" })
        );
        button.addEventListener("click", () => answer(index));
        return button;
      })
    );
  }

  function choiceButtons() {
    return Array.from($("choices").querySelectorAll("button.choice"));
  }

  function lockChoices() {
    for (const button of choiceButtons()) button.disabled = true;
  }

  function markChosen(choice) {
    for (const button of choiceButtons()) {
      button.disabled = true;
      button.classList.toggle("chosen", Number(button.dataset.index) === choice);
      button.classList.toggle("dim", Number(button.dataset.index) !== choice);
    }
  }

  function setAnswerStatus(text, tone) {
    const status = $("answer-status");
    status.textContent = text;
    status.className = "answer-status " + (tone || "");
  }

  async function answer(choice) {
    const question = game.question;
    if (!question || game.state !== "question" || game.answering || answeredChoice() !== undefined) return;
    if (countdown.remaining() <= 0) return;
    game.answering = true;
    markChosen(choice);
    setAnswerStatus("Sending…", "muted");
    const outcome = await submit(question.id, choice);
    game.answering = false;
    if (game.question !== question) return; // the show moved on meanwhile
    if (outcome.ok) {
      me.answers[question.id] = choice;
      save();
      setAnswerStatus("Answer locked in", "ok");
    } else if (outcome.final) {
      setAnswerStatus(outcome.message, "error");
    } else {
      setAnswerStatus(outcome.message + " Tap an answer to try again.", "error");
      for (const button of choiceButtons()) {
        button.disabled = countdown.remaining() <= 0;
        button.classList.remove("chosen", "dim");
      }
    }
  }

  // {ok} | {ok: false, final, message}: over the WebSocket first, then over HTTP.
  async function submit(questionId, choice) {
    const payload = { question_id: questionId, choice };
    if (client && client.state === "connected") {
      try {
        const result = await withTimeout(client.publish(me.channels.answers, [payload]), PUBLISH_TIMEOUT_MS);
        if (result.successful.length) return { ok: true };
        if (result.failed.length) return judged(result.failed[0].message || "");
      } catch (error) {
        console.warn("publish failed, answering over HTTP:", error);
      }
    }
    const response = await Q.fetchJSON(cfg.api.answers, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${me.token}` },
      body: JSON.stringify(payload),
    });
    if (response.status === 202) return { ok: true };
    const code = response.body && response.body.error && response.body.error.code;
    if (code === "already_answered") return { ok: true };
    if (code === "invalid_player_token") {
      leave(LOST);
      return { ok: false, final: true, message: "" };
    }
    const final = response.status >= 400 && response.status < 500 && response.status !== 429;
    return { ok: false, final, message: Q.errorMessage(response) };
  }

  // A publish the server refused, with its reason.
  function judged(message) {
    if (/already answered/i.test(message)) return { ok: true };
    return { ok: false, final: true, message: message || "The answer was not accepted." };
  }

  function withTimeout(promise, ms) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("no reply")), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  function onReveal(event) {
    countdown.stop();
    const question = game.question;
    if (!question || question.id !== event.question_id) {
      game.state = "reveal";
      settlePending(false);
      return showWaiting("Answer revealed", "Get ready for the next question…");
    }
    game.state = "reveal";
    game.reveal = event;
    setPhase("reveal");
    $("q-seconds").textContent = "";
    $("q-bar").style.width = "0%";
    const chosen = answeredChoice();
    const counts = event.counts || [];
    const total = counts.reduce((a, b) => a + b, 0);
    for (const button of choiceButtons()) {
      const index = Number(button.dataset.index);
      button.disabled = true;
      button.classList.toggle("correct", index === event.correct_choice);
      button.classList.toggle("wrong", index === chosen && index !== event.correct_choice);
      button.classList.toggle("dim", index !== event.correct_choice && index !== chosen);
      const count = counts[index] || 0;
      button.querySelector(".count").textContent = String(count);
      button.style.setProperty("--share", total ? ((100 * count) / total).toFixed(1) + "%" : "0%");
    }
    setAnswerStatus("");
    const result = $("result");
    result.hidden = false;
    const right = question.choices[event.correct_choice];
    if (chosen === undefined) {
      result.className = "result none";
      result.replaceChildren(el("strong", {}, "No answer"), el("span", {}, `The answer was ${right}.`));
    } else if (chosen === event.correct_choice) {
      result.className = "result right";
      result.replaceChildren(el("strong", {}, "Right!"), el("span", { id: "result-points" }, ""));
    } else {
      result.className = "result wrong";
      result.replaceChildren(el("strong", {}, "Wrong"), el("span", {}, `The answer was ${right}.`));
    }
    settlePending(true);
    showPoints();
  }

  // The points of a right answer, once scored (from the score event, or the catch-up).
  function showPoints() {
    const points = document.getElementById("result-points");
    const result = game.question && me && me.results[game.question.id];
    if (points && result && result.correct) points.textContent = `+${Q.number(result.points)} points`;
  }

  // What was held back while the question was open, now that it is not.
  function settlePending(announce) {
    const { pendingBoard, pendingScore } = game;
    game.pendingBoard = game.pendingScore = null;
    if (pendingScore) applyScore(pendingScore, announce);
    if (pendingBoard) renderBoard(pendingBoard); // usually the newer of the two
  }

  // -- scores and the leaderboard ------------------------------------------------

  function onMine(event) {
    if (!event || event.type !== "score") return;
    // Keep the verdict for the reveal: the whole room learns it at the same moment.
    if (game.state === "question" && game.question && event.question_id === game.question.id) {
      game.pendingScore = event;
      return;
    }
    applyScore(event, true);
  }

  function applyScore(event, announce) {
    me.score = event.score;
    me.rank = event.rank;
    me.players = event.players;
    me.results[event.question_id] = { correct: event.correct, points: event.delta };
    save();
    renderMe();
    if (!announce) return;
    const delta = $("me-delta");
    delta.hidden = false;
    delta.textContent = event.delta > 0 ? `+${Q.number(event.delta)}` : "+0";
    delta.className = "delta " + (event.delta > 0 ? "up" : "flat");
    delta.style.animation = "none";
    void delta.offsetWidth; // restart the animation
    delta.style.animation = "";
    showPoints();
  }

  function renderMe() {
    if (!me) return;
    for (const node of document.querySelectorAll(".me-rejoin")) node.textContent = me.rejoin_code || "–";
    $("me-score").textContent = Q.number(me.score);
    if (me.rank && ranked()) {
      $("me-rank").textContent = Q.ordinal(me.rank);
      $("me-of").textContent = me.players ? `of ${Q.number(me.players)}` : "rank";
    } else {
      $("me-rank").textContent = "–";
      $("me-of").textContent = "rank";
    }
    if (game.state === "finished") renderFinal();
  }

  // A rank means something once a question has been revealed: in the lobby everyone is "1st".
  const ranked = () => game.index > 0 || game.state === "reveal" || game.state === "finished";

  function onBoard(board, fromSnapshot) {
    if (!board || board.type !== "leaderboard") return;
    if (!fromSnapshot) boardSeen = true;
    Q.setCount("board-players", board.players);
    Q.setCount("lobby-players", board.players);
    // Scores move as answers are scored: keep them for the reveal, like the verdict.
    if (game.state === "question" && !board.final) {
      game.pendingBoard = board;
      return;
    }
    renderBoard(board);
  }

  function renderBoard(board) {
    const top = board.top || [];
    Q.renderTop($("board-top"), top, me && me.player_id);
    $("board-empty").hidden = top.some((row) => row.score > 0);
    Q.setCount("board-players", board.players);
    Q.setCount("lobby-players", board.players);
    const mine = me && top.find((row) => row.player_id === me.player_id);
    if (mine) {
      me.score = mine.score;
      me.rank = mine.rank;
      me.players = board.players;
      save();
      renderMe();
    } else if (me && me.rank) {
      me.players = Math.max(me.players || 0, board.players);
      renderMe();
    }
    if (board.final || board.state === "finished") onFinished();
  }

  function onFinished() {
    settlePending(false);
    game.state = "finished";
    countdown.stop();
    setPhase("finished");
    renderFinal();
  }

  function renderFinal() {
    const text = $("final-text");
    if (!me) return;
    if (me.rank) {
      text.textContent = `You finished ${Q.ordinal(me.rank)}${me.players ? ` of ${Q.number(me.players)}` : ""} with ${Q.plural(me.score, "point")}.`;
    } else {
      text.textContent = `You scored ${Q.plural(me.score, "point")}. Thanks for playing!`;
    }
  }

  // -- play again ------------------------------------------------------------------

  let nextGame = null;
  function invite(code) {
    if (!code || !me) return;
    nextGame = code;
    $("invite").hidden = false;
    $("play-again").textContent = `Play again as ${me.nickname}`;
  }

  const pageOf = (kind, code) => cfg.pages[kind].replace("CODE", encodeURIComponent(code));

  $("play-again").addEventListener("click", async () => {
    if (!nextGame || !me) return;
    $("play-again").disabled = true;
    $("invite-error").hidden = true;
    const result = await Q.fetchJSON(pageOf("join", nextGame), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ nickname: me.nickname }),
    });
    if (result.status === 201 && result.body && result.body.token) {
      const body = result.body;
      const player = { ...body, score: 0, rank: null, players: null, answers: {}, results: {} };
      try {
        localStorage.setItem("quiz:player:" + nextGame, JSON.stringify(player));
      } catch {
        // No storage: the new page asks for the nickname again.
      }
      root.location.assign(pageOf("play", nextGame));
      return;
    }
    if (errorCode(result) === "nickname_taken") return root.location.assign(pageOf("play", nextGame));
    $("play-again").disabled = false;
    $("invite-error").hidden = false;
    $("invite-error").textContent = Q.errorMessage(result);
  });

  // -- start -----------------------------------------------------------------------

  async function start() {
    if (me) return enterGame();
    const state = await Q.fetchJSON(cfg.api.state, { cache: "no-store" });
    if (state.status === 404) return showClosed("No such game", "Check the code and try again.");
    if (state.ok && state.body) game.state = state.body.state;
    if (game.state === "finished") return showFinishedBeforeJoin();
    showJoin();
    if (game.state === "draft") {
      // Not open yet: look again now and then, so the form says when it opens.
      draftPoll = setInterval(async () => {
        const again = await Q.fetchJSON(cfg.api.state, { cache: "no-store" });
        if (!again.ok || !again.body || again.body.state === "draft") return;
        clearInterval(draftPoll);
        game.state = again.body.state;
        $("join-hint").hidden = true;
      }, 5000);
    }
  }

  start();
})();
