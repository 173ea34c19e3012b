/*
 * screen.js: the big screen (/quiz/<code>/screen/, staff): the join code, the current
 * question with its countdown, the answer counts as bars at the reveal, and the live
 * leaderboard. It never shows the right answer before the reveal.
 */
(function () {
  "use strict";

  const Q = window.Quiz;
  const { $, el } = Q;
  const cfg = Q.config();

  $("lobby-url").textContent = cfg.landing_url;
  $("footer-url").textContent = cfg.join_url;

  const show = new Q.StaffShow(cfg, { onChange: render, badge: $("conn"), standings: true });
  const clock = new Q.Countdown({ text: $("q-clock"), bar: $("q-bar") });
  let shownDeadline = null;
  let held = null; // {questionId, top}: the board while a question is open

  function view(name) {
    for (const id of ["lobby", "question", "finished"]) $("view-" + id).hidden = id !== name;
  }

  // While a question is open the board stays as it was when the question opened: scores that
  // move would give the answer away. A page loaded mid-question takes that board from the
  // snapshot (leaderboard_before); a page that saw the question open keeps what it showed.
  function boardToShow(s) {
    if (s.state !== "question" || !s.question) {
      held = null;
      return s.top;
    }
    if (held && held.questionId === s.question.id) return held.top;
    const before = s.boardBefore;
    if (before && before.question_id === s.question.id) held = { questionId: s.question.id, top: before.top };
    else if (s.boardLoaded) held = { questionId: s.question.id, top: s.top };
    return held ? held.top : [];
  }

  function render(s) {
    if (s.nextGame) {
      // The host started a rematch: the big screen follows it to its lobby.
      window.location.assign(cfg.pages.screen.replace("CODE", encodeURIComponent(s.nextGame)));
      return;
    }
    Q.setCount("board-players", s.players);
    Q.renderTop($("board-top"), boardToShow(s), null);

    if (s.state === "finished") {
      clock.stop();
      view("finished");
      return renderPodium(s.top);
    }
    if (!s.question || s.state === "lobby" || s.state === "draft") {
      clock.stop();
      view("lobby");
      Q.setCount("lobby-players", s.players);
      const names = s.top.map((row) => el("span", {}, row.nickname));
      if (s.players > s.top.length) names.push(el("span", {}, `+${Q.number(s.players - s.top.length)} more`));
      $("lobby-names").replaceChildren(...names);
      return;
    }
    view("question");
    renderQuestion(s);
  }

  function renderQuestion(s) {
    const q = s.question;
    const revealed = s.state === "reveal";
    $("q-number").textContent = `Question ${q.index + 1} of ${s.total || q.total}`;
    $("q-text").textContent = q.text;
    $("answered").textContent =
      s.answered !== null ? `${Q.number(s.answered)} of ${Q.number(s.players)} answered` : "";

    if (s.state === "question" && s.deadline !== null) {
      if (shownDeadline !== s.deadline) {
        shownDeadline = s.deadline;
        clock.start(s.remainingMs(), q.time_limit * 1000);
      }
    } else {
      clock.stop();
      shownDeadline = null;
      $("q-clock").textContent = "";
      $("q-bar").style.width = "0%";
    }

    const counts = revealed ? s.counts || [] : [];
    const total = counts.reduce((a, b) => a + b, 0);
    const tiles = $("tiles");
    tiles.classList.toggle("revealed", revealed);
    tiles.replaceChildren(
      ...q.choices.map((text, index) => {
        const count = counts[index];
        const tile = el(
          "div",
          { className: `tile bg${index}` + (revealed && index === q.correct_choice ? " correct" : "") },
          el("span", { className: "letter" }, Q.LETTERS[index]),
          el("span", { className: "text" }, text),
          el("span", { className: "count" }, count === undefined ? "" : Q.number(count))
        );
        tile.style.setProperty("--share", total && count ? ((100 * count) / total).toFixed(1) + "%" : "0%");
        return tile;
      })
    );
  }

  // The podium's steps: every player ranked 1st to 3rd, tied players on one step together
  // (competition ranks: two tied 1st leave no 2nd step, the next is 3rd).
  function podiumSteps(top) {
    const steps = [];
    for (const row of top) {
      if (row.rank > 3) break;
      const step = steps[steps.length - 1];
      if (step && step.rank === row.rank) step.rows.push(row);
      else steps.push({ rank: row.rank, rows: [row] });
    }
    return steps;
  }

  function renderPodium(top) {
    const steps = podiumSteps(top);
    const places = [steps[1], steps[0], steps[2]]; // 2nd, 1st, 3rd: the winner in the middle
    $("podium").replaceChildren(
      ...places
        .map((step, i) => {
          if (!step) return null;
          const place = [2, 1, 3][i];
          return el(
            "div",
            { className: `p${place}`, dataset: { rank: step.rank } },
            el("div", { className: "place" }, Q.ordinal(step.rank)),
            ...step.rows.map((row) =>
              el(
                "div",
                { className: "winner" },
                el("div", { className: "who" }, row.nickname),
                el("div", { className: "pts" }, Q.plural(row.score, "point"))
              )
            )
          );
        })
        .filter(Boolean)
    );
  }

  render(show);
  show.start();
})();
