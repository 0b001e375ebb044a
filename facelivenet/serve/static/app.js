// facelivenet's browser client: camera -> challenge -> recorded answer (WebM) -> decision.
// Plain JavaScript, no build step. The server decides; this page only films and shows.
"use strict";

const NEUTRAL_SECONDS = 2;   // hold a neutral face first
const EXPRESSION_SECONDS = 3; // then each challenged expression

const $ = (id) => document.getElementById(id);

// What the user is asked to do for each challenge step (the server's names).
const PROMPTS = {
  happy: "Smile", surprise: "Look surprised", sad: "Look sad", angry: "Look angry",
  disgust: "Look disgusted", fear: "Look afraid", neutral: "Neutral face",
  turn_left: "Turn your head to your left", turn_right: "Turn your head to your right", chin_up: "Lift your chin",
};

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: { code: "bad_response", message: response.statusText } }));
  if (!response.ok) {
    const err = new Error(body.error ? body.error.message : response.statusText);
    err.code = body.error ? body.error.code : "error";
    throw err;
  }
  return body;
}

function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

async function countdown(text, seconds) {
  $("prompt").textContent = text;
  for (let s = seconds; s > 0; s--) {
    $("countdown").textContent = String(s);
    await sleep(1000);
  }
}

function pickMimeType() {
  for (const type of ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm"]) {
    if (window.MediaRecorder && MediaRecorder.isTypeSupported(type)) return type;
  }
  return "";
}

async function record(stream, challenge) {
  const recorder = new MediaRecorder(stream, { mimeType: pickMimeType() });
  const chunks = [];
  recorder.ondataavailable = (e) => { if (e.data && e.data.size) chunks.push(e.data); };
  const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
  recorder.start(250);
  await countdown("Neutral face, please", NEUTRAL_SECONDS);
  for (const expression of challenge.expressions) {
    await countdown("Now: " + (PROMPTS[expression] || expression), EXPRESSION_SECONDS);
  }
  recorder.stop();
  await stopped;
  $("prompt").textContent = "Checking...";
  $("countdown").textContent = "";
  return new Blob(chunks, { type: "video/webm" });
}

function show(decision) {
  const section = $("decision");
  section.hidden = false;
  $("result").textContent = decision.decision === "accept" ? "Accepted" : "Rejected";
  $("result").className = decision.decision;
  $("score").textContent = decision.score.toFixed(4);
  const reasons = $("reasons");
  reasons.replaceChildren();
  for (const r of decision.reasons) {
    const li = document.createElement("li");
    li.dataset.code = r.code;
    li.textContent = r.code + ": " + r.message;
    reasons.appendChild(li);
  }
  const audit = $("audit");
  audit.replaceChildren();
  if (decision.audit) {
    const frames = decision.audit.frames.slice();
    if (decision.audit.reference) frames.unshift(decision.audit.reference);
    for (const f of frames) {
      const img = document.createElement("img");
      img.src = f.path;
      img.alt = f.phase || "reference";
      audit.appendChild(img);
    }
  }
  $("document").textContent = JSON.stringify(decision);
}

async function run(event) {
  event.preventDefault();
  $("start").disabled = true;
  $("decision").hidden = true;
  let stream;
  try {
    say("Opening the camera...");
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    $("video").srcObject = stream;
    $("stage").hidden = false;
    const challenge = await api("/v1/challenges", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ identity: $("identity").value.trim() }),
    });
    document.body.dataset.challenge = challenge.id;
    say("Challenge: neutral, then " + challenge.expressions.join(", then "));
    const clip = await record(stream, challenge);
    say("Uploading " + Math.round(clip.size / 1024) + " KiB...");
    const form = new FormData();
    form.append("clip", clip, "answer.webm");
    const decision = await api("/v1/challenges/" + encodeURIComponent(challenge.id) + "/video",
                               { method: "POST", body: form });
    show(decision);
    say("");
  } catch (err) {
    say((err.code ? err.code + ": " : "") + err.message, true);
  } finally {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    $("stage").hidden = true;
    $("start").disabled = false;
    document.body.dataset.done = "1";
  }
}

$("form").addEventListener("submit", run);
