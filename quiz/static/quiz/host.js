/*
 * host.js: the host console (/quiz/<code>/host/, staff).
 *
 * The buttons POST api.control[action] with the session cookie and its CSRF token
 * (X-CSRFToken, from the csrftoken cookie); the game channel then tells every page,
 * this one included, what changed. Each button is enabled only in the states where
 * its transition is allowed: open (draft), start (lobby), reveal (question),
 * next (reveal, with a question left), finish (anything but finished).
 *
 * While a question is open the leaderboard is hidden (a projected console would give the
 * answer away as scores move) until the host asks to see it; the next question hides it again.
 * Once finished, "Play again" POSTs api.play_again and takes the host to the new game's console;
 * the players are invited on the game channel.
 */
(function () {
  "use strict";

  const root = window;
  const Q = root.Quiz;
  const { $, el } = Q;
  const cfg = Q.config();
  let busy = false;
  let scoresShownFor = null; // the open question whose scores the host asked to see

  $("join-url").textContent = cfg.join_url;

  const show = new Q.StaffShow(cfg, { onChange: render, badge: $("conn") });
  const clock = new Q.Countdown({ text: $("clock"), bar: $("q-bar"), onEnd: () => render(show) });

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function allowed(action) {
    switch (action) {
      case "open":
        return show.state === "draft";
      case "start":
        return show.state === "lobby";
      case "reveal":
        return show.state === "question";
      case "next":
        return show.state === "reveal" && show.hasNext;
      case "finish":
        return show.state !== "finished";
      default:
        return false;
    }
  }

  function message(text, isError) {
    $("message").textContent = text || "";
    $("message").className = "message" + (isError ? " error" : "");
  }

  async function act(action) {
    if (busy || !allowed(action)) return;
    if (action === "finish" && !window.confirm("Finish the game for everyone?")) return;
    busy = true;
    render(show);
    message("");
    const result = await Q.fetchJSON(cfg.api.control[action], {
      method: "POST",
      headers: { "content-type": "application/json", "X-CSRFToken": csrfToken() },
      body: "{}",
    });
    busy = false;
    if (result.status === 403) {
      message("Not allowed: your session may have ended. Reload the page and sign in again.", true);
    } else if (!result.ok) {
      message(Q.errorMessage(result), true);
    }
    await show.refresh(); // the game channel says it too; this also fixes a missed event
    render(show);
  }

  for (const button of document.querySelectorAll(".controls button")) {
    button.addEventListener("click", () => act(button.dataset.action));
  }

  $("board-toggle").addEventListener("click", () => {
    const id = show.question && show.question.id;
    scoresShownFor = scoresShownFor === id ? null : id;
    render(show);
  });

  function pageOf(kind, code) {
    return cfg.pages[kind].replace("CODE", encodeURIComponent(code));
  }

  $("play-again").addEventListener("click", async () => {
    if (busy) return;
    busy = true;
    render(show);
    message("");
    const result = await Q.fetchJSON(cfg.api.play_again, {
      method: "POST",
      headers: { "content-type": "application/json", "X-CSRFToken": csrfToken() },
      body: "{}",
    });
    busy = false;
    if (result.ok && result.body && result.body.code) {
      root.location.assign(pageOf("host", result.body.code));
      return;
    }
    message(result.status === 403 ? "Not allowed: reload the page and sign in again." : Q.errorMessage(result), true);
    render(show);
  });

  function autoText(s) {
    const parts = [];
    if (s.autoReveal) parts.push("answers are revealed when time is up");
    if (s.autoNext !== null) parts.push(`the next question follows ${Q.plural(s.autoNext, "second")} after each reveal`);
    return parts.length ? `Automatic: ${parts.join("; ")}.` : "";
  }

  let shownDeadline = null;
  function render(s) {
    const badge = $("state");
    badge.dataset.state = s.state;
    badge.textContent = Q.stateLabel(s.state);
    for (const button of document.querySelectorAll(".controls button")) {
      button.disabled = busy || !allowed(button.dataset.action);
    }
    const nextButton = document.querySelector('[data-action="next"]');
    nextButton.title = s.state === "reveal" && !s.hasNext ? "That was the last question: finish the game." : "";

    Q.setCount("players", s.players);
    const q = s.question;
    $("answered").textContent = q && s.answered !== null ? Q.number(s.answered) : "–";
    $("answered-label").textContent = q && s.players ? `of ${Q.number(s.players)} answered` : "answered";

    if (s.state === "question" && s.deadline !== null) {
      if (shownDeadline !== s.deadline) {
        shownDeadline = s.deadline;
        clock.start(s.remainingMs(), q ? q.time_limit * 1000 : s.remainingMs());
      }
    } else {
      clock.stop();
      shownDeadline = null;
      $("clock").textContent = "–";
      $("q-bar").style.width = "0%";
    }

    const open = s.state === "question" && s.question;
    const hidden = open && scoresShownFor !== s.question.id;
    $("board-toggle").hidden = !open;
    $("board-toggle").textContent = hidden ? "Show scores" : "Hide scores";
    $("board-toggle").setAttribute("aria-expanded", String(!hidden));
    $("board-hidden").hidden = !hidden;
    $("board-top").hidden = hidden;
    Q.renderTop($("board-top"), hidden ? [] : s.top, null);
    $("board-empty").hidden = hidden || s.top.length > 0;

    const auto = autoText(s);
    const timeUp = s.state === "question" && s.deadline !== null && s.remainingMs() <= 0;
    $("auto").hidden = (!auto && !timeUp) || s.state === "finished";
    $("auto").textContent = timeUp
      ? s.autoReveal
        ? "Time is up: the answer is being revealed."
        : "Time is up: press Reveal to show the answer."
      : auto;
    $("again").hidden = s.state !== "finished";
    $("play-again").hidden = Boolean(s.nextGame);
    $("play-again").disabled = busy;
    $("next-game").hidden = !s.nextGame;
    if (s.nextGame) $("next-game").href = pageOf("host", s.nextGame);

    renderQuestion(s);
    renderQuestions(s);
  }

  function renderQuestion(s) {
    const q = s.question;
    if (!q || s.state === "lobby" || s.state === "draft") {
      $("q-number").textContent = s.total ? `${Q.plural(s.total, "question")} ready` : "";
      $("q-text").textContent = s.state === "draft" ? "Open the lobby to let players join." : "No question yet.";
      $("q-choices").replaceChildren();
      return;
    }
    const status = s.state === "question" ? "open" : s.state === "reveal" ? "revealed" : "closed";
    $("q-number").textContent = `Question ${q.index + 1} of ${s.total || q.total} · ${status} · ${Q.number(q.points)} points`;
    $("q-text").textContent = q.text;
    const counts = s.counts || [];
    const total = counts.reduce((a, b) => a + b, 0);
    $("q-choices").replaceChildren(
      ...q.choices.map((text, index) => {
        const count = counts[index];
        const item = el(
          "li",
          { className: index === q.correct_choice ? "correct" : "" },
          el("span", { className: `letter bg${index}` }, Q.LETTERS[index]),
          el("span", { className: "text" }, text),
          index === q.correct_choice ? el("span", { className: "tag" }, "CORRECT") : null,
          el("span", { className: "count" }, count === undefined ? "" : Q.number(count))
        );
        item.style.setProperty("--share", total && count ? ((100 * count) / total).toFixed(1) + "%" : "0%");
        return item;
      })
    );
  }

  function renderQuestions(s) {
    $("questions").replaceChildren(
      ...s.questions.map((q) => {
        const current = s.question && q.id === s.question.id && s.state !== "finished";
        const done = q.index < s.index || (q.index === s.index && s.state !== "question");
        return el(
          "li",
          { className: current ? "current" : done ? "done" : "" },
          q.text,
          el("span", { className: "answer" }, `✓ ${q.choices[q.correct_choice]}`)
        );
      })
    );
  }

  render(show);
  show.start();
})();
