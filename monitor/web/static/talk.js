// Talk-down panel on the camera page and the speakers page: press "talk" to speak live through the chosen
// speakers (microphone -> AudioWorklet -> 16-bit PCM over the /api/talk WebSocket), press again to stop; or type
// a message, preview it and play it as speech. Operators and admins get the controls; everyone sees recent talks
// and their recordings. Stats for tests live on the talk button (button.talkStats).
"use strict";
(async () => {
  const { el } = VM;
  const RATE = 16000;
  const FRAME = 320; // 20 ms at 16 kHz
  const onCamera = location.pathname.startsWith("/cameras/");
  const camera = onCamera ? decodeURIComponent(location.pathname.split("/").pop()) : null;
  const main = document.querySelector("main");
  const me = await VM.api("/api/me");
  const canTalk = me.role === "operator" || me.role === "admin";

  const list = el("tbody");
  const panel = el("section", { class: "talk-panel", "data-testid": "talk-panel" },
    el("h2", {}, "喊话 Talk"));
  main.append(panel);

  if (canTalk) await buildControls();
  panel.append(el("h3", {}, "最近喊话 Recent talks"),
    el("div", { class: "table-wrap" }, el("table", { class: "talks", "data-testid": "talk-list" },
      el("thead", {}, el("tr", {}, el("th", {}, "时间 When"), el("th", {}, "用户 Who"), el("th", {}, "内容 What"),
        el("th", {}, "时长 Length"), el("th", {}, "喇叭 Speakers"), el("th", {}, "录音 Recording"))), list)));
  await refreshList();

  async function refreshList() {
    const query = camera ? `?camera=${encodeURIComponent(camera)}` : "";
    const items = await VM.api(`/api/talks${query}`).catch(() => []);
    list.replaceChildren(...items.map(talkRow));
  }

  function results(talk) {
    return el("ul", { class: "talk-results" }, ...talk.speakers.map((r) => el("li", { class: r.ok ? "ok" : "bad" },
      `${r.speaker}: ${r.ok ? `✔ ${r.packets} 包 packets` : `✘ ${r.error || "失败 failed"}`}`
      + (r.dropped_s > 0 ? ` (丢弃 dropped ${r.dropped_s} s)` : ""))));
  }

  function talkRow(t) {
    const what = t.kind === "text" ? `文字 text: ${t.text || ""}` : "实时 live";
    const audio = t.audio_url ? el("audio", { controls: true, preload: "none", src: t.audio_url, "data-testid": "talk-audio" })
      : (t.audio_error || "—");
    return el("tr", { "data-id": t.id }, el("td", {}, VM.time(t.started)), el("td", {}, t.user), el("td", {}, what),
      el("td", {}, `${t.duration_s.toFixed(1)} s`), el("td", {}, results(t)), el("td", {}, audio));
  }

  async function buildControls() {
    const targets = await VM.api("/api/talk/targets");
    const select = el("select", { "data-testid": "talk-target", "aria-label": "喊话对象 talk to" },
      ...targets.map((t) => el("option", { value: t.value, title: t.speakers.join(", ") }, t.label)));
    const own = targets.find((t) => t.value === `camera:${camera}`);
    if (own) select.value = own.value;
    const button = el("button", { type: "button", class: "talk", "data-testid": "talk", "aria-pressed": "false" },
      "按下喊话 Talk");
    const meter = el("meter", { min: 0, max: 0.5, value: 0, "data-testid": "talk-level" });
    const status = el("span", { class: "talk-status muted", role: "status", "aria-live": "polite",
      "data-testid": "talk-status" });
    const outcome = el("div", { "data-testid": "talk-result" });
    const text = el("textarea", { rows: 2, maxlength: 300, "data-testid": "talk-text",
      placeholder: "输入要播放的话 Type a message" });
    const preview = el("button", { type: "button", "data-testid": "talk-preview" }, "试听 Preview");
    const say = el("button", { type: "button", "data-testid": "talk-say" }, "播放 Play");
    const player = el("audio", { controls: true, hidden: true, "data-testid": "talk-preview-audio" });
    const sayStatus = el("span", { class: "muted", role: "status", "data-testid": "talk-say-status" });
    panel.append(
      el("div", { class: "talk-bar" }, select, button, meter, status), outcome,
      el("div", { class: "talk-bar" }, text, preview, say), player, sayStatus);
    if (!targets.length) {
      button.disabled = say.disabled = true;
      status.textContent = "没有配置喇叭 No speakers configured";
    }

    const stats = { state: "idle", framesSent: 0, firstSentAt: null, lastSentAt: null, talkId: null, result: null };
    button.talkStats = stats;
    let session = null;

    function chosen() {
      const value = select.value;
      const cut = value.indexOf(":");
      const kind = value.slice(0, cut), name = value.slice(cut + 1);
      return kind === "camera" ? { camera: name } : { targets: [name], camera };
    }

    function show(state, message) {
      stats.state = state;
      button.classList.toggle("talking", state === "talking");
      button.setAttribute("aria-pressed", String(state === "talking" || state === "connecting"));
      button.textContent = state === "talking" || state === "connecting" ? "停止喊话 Stop" : "按下喊话 Talk";
      status.textContent = message;
    }

    async function start() {
      if (!navigator.mediaDevices || !window.AudioWorkletNode) {
        show("idle", "麦克风不可用：需要 HTTPS 或 localhost Microphone unavailable (needs HTTPS or localhost)");
        return;
      }
      outcome.replaceChildren();
      show("connecting", "连接中 connecting…");
      const s = { ws: null, ctx: null, stream: null, ended: false };
      session = s;
      try {
        // Level kept even (AGC); no noise suppression (its artifacts are loud on a horn, and it changes the voice
        // far more than a control room's hum does) and no echo cancelling (nothing plays on this page meanwhile).
        s.stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false,
          noiseSuppression: false, autoGainControl: true, channelCount: 1 } });
        s.ctx = new AudioContext({ sampleRate: RATE });
        await s.ctx.audioWorklet.addModule("/static/talk-worklet.js");
      } catch (err) {
        cleanup(s);
        show("idle", `麦克风打不开 Cannot open the microphone: ${err.message || err}`);
        return;
      }
      const node = new AudioWorkletNode(s.ctx, "talk-processor", { processorOptions: { frame: FRAME } });
      const mute = s.ctx.createGain();
      mute.gain.value = 0; // the graph must reach the destination to be processed; nothing is heard locally
      s.ctx.createMediaStreamSource(s.stream).connect(node);
      node.connect(mute).connect(s.ctx.destination);
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      s.ws = new WebSocket(`${scheme}${location.host}/api/talk`);
      s.ws.binaryType = "arraybuffer";
      s.ws.onopen = () => s.ws.send(JSON.stringify({ ...chosen(), rate: s.ctx.sampleRate }));
      node.port.onmessage = (e) => {
        meter.value = e.data.level;
        if (!s.ws || s.ws.readyState !== WebSocket.OPEN || s.ended) return;
        s.ws.send(e.data.pcm);
        const now = performance.timeOrigin + performance.now();
        if (stats.firstSentAt === null) stats.firstSentAt = now;
        stats.lastSentAt = now;
        stats.framesSent += 1;
      };
      s.ws.onmessage = (e) => {
        const msg = JSON.parse(e.data);
        if (msg.type === "started") {
          stats.talkId = msg.id;
          const busy = Object.keys(msg.busy || {});
          show("talking", "正在喊话 talking… " + msg.speakers.join(", ")
            + (busy.length ? ` (忙 busy: ${busy.join(", ")})` : ""));
        } else if (msg.type === "error") {
          show("idle", `喊话失败 ${msg.error}`);
        } else if (msg.type === "ended") {
          stats.result = msg.talk;
          outcome.replaceChildren(results(msg.talk));
          show("idle", `喊话结束 ended (${msg.talk.duration_s.toFixed(1)} s)`);
          refreshList();
        }
      };
      s.ws.onclose = (e) => {
        cleanup(s);
        if (stats.state !== "idle") show("idle", e.reason ? `已断开 disconnected: ${e.reason}` : "已断开 disconnected");
      };
    }

    function cleanup(s) {
      s.ended = true;
      if (s.stream) s.stream.getTracks().forEach((t) => t.stop());
      if (s.ctx) s.ctx.close().catch(() => null);
      meter.value = 0;
      if (session === s) session = null;
    }

    function stop() {
      const s = session;
      if (!s) return;
      show("stopping", "结束中 finishing…");
      if (s.ws && s.ws.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify({ type: "stop" }));
      else if (s.ws) s.ws.close();
      if (s.stream) s.stream.getTracks().forEach((t) => t.stop());
      s.ended = true;
    }

    button.addEventListener("click", () => (session ? stop() : start()));

    async function speech(path, body) {
      const res = await fetch(path, { method: "POST", credentials: "same-origin", body: JSON.stringify(body),
        headers: { "Content-Type": "application/json", "X-CSRF-Token": me.csrf_token } });
      if (!res.ok) {
        const data = await res.json().catch(() => null);
        throw new Error(VM.errorText(data && data.detail, res.status));
      }
      return res;
    }

    preview.addEventListener("click", async () => {
      sayStatus.textContent = "合成中 rendering…";
      try {
        const blob = await (await speech("/api/talk/preview", { text: text.value })).blob();
        if (player.src) URL.revokeObjectURL(player.src);
        player.src = URL.createObjectURL(blob);
        player.hidden = false;
        sayStatus.textContent = "";
        player.play().catch(() => null);
      } catch (err) {
        sayStatus.textContent = `试听失败 ${err.message}`;
      }
    });

    say.addEventListener("click", async () => {
      say.disabled = true;
      sayStatus.textContent = "播放中 playing…";
      try {
        const talk = await (await speech("/api/talk/say", { ...chosen(), text: text.value })).json();
        sayStatus.replaceChildren(talk.ok ? "已播放 played " : "播放有问题 problems ", results(talk));
        refreshList();
      } catch (err) {
        sayStatus.textContent = `播放失败 ${err.message}`;
      } finally {
        say.disabled = false;
      }
    });
  }
})();
