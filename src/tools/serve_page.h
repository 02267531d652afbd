// The single page gpt2_serve shows at "/", in the spirit of the original Gradio
// demo: a prompt box, sliders for the number of outputs and the length,
// top-k / temperature / top-p / seed, clickable examples, and one box per
// sample, filled as the text streams in. It talks to the server only through
// POST /api/generate (with "stream": true). gpt2_serve replaces the {{...}}
// placeholders (HTML-escaped) before serving it.
#ifndef GPT2_TOOLS_SERVE_PAGE_H_
#define GPT2_TOOLS_SERVE_PAGE_H_

namespace gpt2 {

inline constexpr char kServePage[] = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
  :root { --accent: #ea580c; --border: #e5e7eb; --muted: #6b7280; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto,
         "DejaVu Sans", sans-serif; color: #111827; background: #f9fafb; }
  header { padding: 18px 28px 12px; background: #fff; border-bottom: 1px solid var(--border); }
  h1 { margin: 0 0 4px; font-size: 22px; }
  .sub { color: var(--muted); font-size: 13px; }
  main { display: grid; grid-template-columns: minmax(300px, 400px) 1fr; gap: 20px;
         padding: 20px 28px; }
  @media (max-width: 800px) { main { grid-template-columns: 1fr; } }
  .panel { background: #fff; border: 1px solid var(--border); border-radius: 10px; padding: 16px;
           align-self: start; }
  label { display: block; font-weight: 600; font-size: 13px; margin: 12px 0 4px; }
  label:first-child { margin-top: 0; }
  textarea { width: 100%; min-height: 96px; padding: 8px; font: inherit; border: 1px solid #d1d5db;
             border-radius: 6px; resize: vertical; }
  .row { display: flex; align-items: center; gap: 10px; }
  .row input[type=range] { flex: 1; accent-color: var(--accent); }
  .row output { min-width: 3em; text-align: right; font-variant-numeric: tabular-nums; }
  .grid2 { display: grid; grid-template-columns: repeat(2, 1fr); gap: 10px; }
  .grid2 input { width: 100%; padding: 6px; font: inherit; border: 1px solid #d1d5db; border-radius: 6px; }
  button#generate { margin-top: 16px; width: 100%; padding: 10px; font: inherit; font-weight: 600;
                    color: #fff; background: var(--accent); border: 0; border-radius: 8px; cursor: pointer; }
  button#generate.stop { background: #374151; }
  .examples { margin-top: 16px; }
  .examples button { margin: 4px 6px 0 0; padding: 4px 10px; font: inherit; font-size: 13px;
                     background: #f3f4f6; border: 1px solid var(--border); border-radius: 6px; cursor: pointer; }
  #status { color: var(--muted); font-size: 13px; min-height: 1.4em; margin-bottom: 8px; }
  #status.error { color: #b91c1c; }
  .sample { background: #fff; border: 1px solid var(--border); border-radius: 8px; padding: 10px 12px;
            margin-bottom: 10px; white-space: pre-wrap; word-wrap: break-word;
            font: 14px/1.45 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; }
  .sample b { color: var(--accent); font-weight: 600; }
  .sample .meta { display: block; margin-top: 6px; color: var(--muted); font: 12px system-ui, sans-serif; }
  .empty { color: var(--muted); font-style: italic; }
</style>
</head>
<body>
<header>
  <h1>{{TITLE}}</h1>
  <div class="sub" id="model-info">{{SUBTITLE}}</div>
</header>
<main>
  <section class="panel">
    <form id="form" autocomplete="off">
      <label for="prompt">Enter some text</label>
      <textarea id="prompt" name="prompt" maxlength="{{MAX_PROMPT_BYTES}}"
                placeholder="First Citizen:"></textarea>
      <label for="num_samples">Number of outputs</label>
      <div class="row"><input type="range" id="num_samples" min="1" max="{{MAX_SAMPLES}}" value="5">
        <output id="num_samples_out">5</output></div>
      <label for="max_new_tokens">Maximum length (new tokens)</label>
      <div class="row"><input type="range" id="max_new_tokens" min="1" max="{{MAX_NEW_TOKENS}}"
                              value="{{DEFAULT_NEW_TOKENS}}">
        <output id="max_new_tokens_out">{{DEFAULT_NEW_TOKENS}}</output></div>
      <div class="grid2">
        <div><label for="top_k">Top-k</label>
          <input type="number" id="top_k" min="1" max="{{VOCAB_SIZE}}" value="50"></div>
        <div><label for="temperature">Temperature</label>
          <input type="number" id="temperature" min="0.05" max="10" step="0.05" value="1.0"></div>
        <div><label for="top_p">Top-p</label>
          <input type="number" id="top_p" min="0.01" max="1" step="0.01" value="1.0"></div>
        <div><label for="seed">Seed</label>
          <input type="number" id="seed" min="0" step="1" value="1337"></div>
      </div>
      <button type="submit" id="generate">Generate</button>
    </form>
    <div class="examples">
      <label>Examples</label>
      <button type="button" class="example">First Citizen:</button>
      <button type="button" class="example">ROMEO:</button>
      <button type="button" class="example">To be, or not to be</button>
      <button type="button" class="example">JULIET:
O Romeo, Romeo!</button>
    </div>
  </section>
  <section>
    <div id="status"></div>
    <div id="outputs"><div class="sample empty">Samples appear here, one per box.</div></div>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
for (const id of ["num_samples", "max_new_tokens"]) {
  $(id).addEventListener("input", () => { $(id + "_out").value = $(id).value; });
}
for (const b of document.querySelectorAll("button.example")) {
  b.addEventListener("click", () => { $("prompt").value = b.textContent; $("prompt").focus(); });
}
function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}
// While a request runs, the button stops it: the page drops the connection,
// and the server stops that generation at its next batch of draws.
let running = null;
$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (running) { running.abort(); return; }
  const prompt = $("prompt").value;
  if (prompt.length === 0) { setStatus("Enter some text first.", true); return; }
  // An empty seed box: a fresh seed, put in the box so the text can be drawn
  // again. A seed past 2^53 - 1 is not a whole number in JavaScript.
  if ($("seed").value.trim() === "") {
    const r = new Uint32Array(2);
    crypto.getRandomValues(r);
    $("seed").value = String((r[0] & 0x1fffff) * 4294967296 + r[1]);
  }
  const seed = Number($("seed").value);
  if (!Number.isSafeInteger(seed) || seed < 0) {
    setStatus("Seed: a whole number from 0 to 9007199254740991 (2^53 - 1) " +
              "on this page; larger ones through the API.", true);
    return;
  }
  const body = {
    prompt,
    num_samples: Number($("num_samples").value),
    max_new_tokens: Number($("max_new_tokens").value),
    top_k: Number($("top_k").value),
    temperature: Number($("temperature").value),
    top_p: Number($("top_p").value),
    seed,
  };
  running = new AbortController();
  $("generate").textContent = "Stop";
  $("generate").className = "stop";
  setStatus("Generating…", false);
  // One box per sample, filled as the server streams each sample's new text
  // (newline-separated JSON: {"deltas": [...], "tokens": N}, then the answer
  // with "done": true, or {"error": ...}).
  const outputs = $("outputs");
  const texts = [], metas = [];
  for (let i = 0; i < body.num_samples; i++) {
    const box = document.createElement("div");
    box.className = "sample";
    const head = document.createElement("b");
    head.textContent = prompt;
    const text = document.createTextNode("");
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = "sample " + (i + 1) + " · generating…";
    box.append(head, text, meta);
    texts.push(text);
    metas.push(meta);
  }
  const started = performance.now();
  let answered = false, tokens = 0;
  const finish = (data) => {
    answered = true;
    data.completions.forEach((completion, i) => {
      texts[i].data = completion;
      metas[i].textContent = "sample " + (i + 1) + " · " + data.new_tokens[i] +
          " tokens · stopped: " + data.finish_reasons[i].replace(/_/g, " ");
    });
    setStatus(data.num_samples + " samples, " + data.tokens + " new tokens in " +
              data.seconds.toFixed(2) + " s (" + Math.round(data.tokens_per_second) +
              " tokens/s)", false);
  };
  const onLine = (line) => {
    if (line.length === 0) return;
    const event = JSON.parse(line);
    if (event.error !== undefined) {
      answered = true;
      setStatus("Error: " + event.error, true);
    } else if (event.done) {
      finish(event);
    } else {
      event.deltas.forEach((delta, i) => { if (delta) texts[i].data += delta; });
      tokens = event.tokens;
      const seconds = (performance.now() - started) / 1000;
      setStatus("Generating… " + event.tokens + " new tokens (" +
                Math.round(event.tokens / Math.max(seconds, 1e-3)) + " tokens/s)", false);
    }
  };
  try {
    const response = await fetch("/api/generate", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({...body, stream: true}), signal: running.signal});
    if (!response.ok) {
      const data = await response.json();
      setStatus("Error " + response.status + ": " + data.error, true);
      return;
    }
    outputs.replaceChildren(...texts.map((t) => t.parentNode));
    const reader = response.body.getReader();
    const utf8 = new TextDecoder();
    let pending = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      pending += utf8.decode(value, {stream: true});
      let newline;
      while ((newline = pending.indexOf("\n")) >= 0) {
        onLine(pending.slice(0, newline));
        pending = pending.slice(newline + 1);
      }
    }
    onLine(pending + utf8.decode());
    if (!answered) setStatus("The answer ended early (the server went away?)", true);
  } catch (err) {
    if (err.name === "AbortError") {
      for (const meta of metas) meta.textContent = meta.textContent.replace("generating…", "stopped");
      setStatus("Stopped after " + tokens + " new tokens.", false);
    } else {
      setStatus("Request failed: " + err, true);
    }
  } finally {
    running = null;
    $("generate").textContent = "Generate";
    $("generate").className = "";
  }
});
</script>
</body>
</html>
)HTML";

}  // namespace gpt2

#endif  // GPT2_TOOLS_SERVE_PAGE_H_
