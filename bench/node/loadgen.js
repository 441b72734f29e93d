'use strict';
// Fan-out load generator for hubbub (and for the reference ws broadcast server).
//
// One sender, N receivers, all in this process; connection 0 is both the
// sender and a receiver. Send timestamps are performance.now() of this
// process and travel inside the message body ("t=<ms>;xxxx..."), so every
// receiver can compute send-to-receive latency against the same clock.
//
// Usage:
//   node loadgen.js --target hubbub --url ws://127.0.0.1:8000/ws \
//        --tokens tokens.json --conversation CONV_ID --mode throughput
//   node loadgen.js --target ref --url ws://127.0.0.1:9000 --receivers 1000 --mode latency
//   node loadgen.js --config run.json      (same keys as the flags, e.g. {"target": "ref", ...})
//
// Run with --help for every option. Prints exactly one JSON object on stdout;
// diagnostics go to stderr. Exit status 0 on success, 1 on a failed run
// (connection errors, missing deliveries, stall, timeout), 2 on bad usage.

const fs = require('fs');
const { performance } = require('perf_hooks');
const { randomBytes } = require('crypto');
const WebSocket = require('ws');
const { RawWebSocket } = require('./rawws');
const { SseClient } = require('./sse');

// ---------------------------------------------------------------- options --

const DEFAULTS = {
  target: 'hubbub', // hubbub | ref
  url: '', // hubbub: ws://HOST:PORT/ws ; ref: ws://HOST:PORT
  tokens: '', // hubbub: JSON file, an array of tokens (or {"tokens": [...]}); token 0 is the sender
  conversation: '', // hubbub: conversation id all tokens are members of
  receivers: 0, // ref: number of connections (required); hubbub: default = number of tokens
  mode: 'throughput', // throughput | latency
  warmup: 2, // seconds before measuring (both modes)
  duration: 10, // seconds measured
  window: 64, // throughput: max messages sent but not yet received by every receiver
  rate: 50, // latency: messages per second sent
  'body-size': 80, // message body length in characters
  'ref-frame-bytes': 300, // ref: size the broadcast payload is padded to
  'sample-every': 20, // throughput: every k-th receiver parses timestamps for latency
  'connect-concurrency': 100, // connections being opened at once
  'connect-timeout': 15, // seconds for one connection to be ready (open + hello)
  'stall-timeout': 10, // seconds without progress before the run is declared stalled
  'drain-timeout': 10, // seconds to wait for outstanding deliveries after sending stops
  timeout: 0, // hard overall limit in seconds; 0 = computed from the others
  'server-pid': 0, // optional: report this process's CPU use over the measured window
  'coalesce-ms': 0, // throughput: pause this long per event-loop turn (headroom check)
  client: 'raw', // receiver WebSocket client: raw (rawws.js, cheap) | ws (the ws library)
  transport: 'ws', // hubbub receivers: ws | sse (the HTTP stream, sse.js); the sender stays on ws
};

const HELP = `usage: node loadgen.js [--config FILE.json] [--key value ...]

  --target hubbub|ref       server kind (default hubbub)
  --url URL                 hubbub: ws://HOST:PORT/ws (token appended as ?token=)
                            ref:    ws://HOST:PORT
  --tokens FILE             hubbub: JSON array of tokens (or {"tokens": [...]}); token 0 sends
  --conversation ID         hubbub: conversation every token is a member of
  --receivers N             connections; ref: required; hubbub: default = number of tokens
  --mode throughput|latency (default throughput)
  --warmup S                seconds before measuring (default 2)
  --duration S              seconds measured (default 10)
  --window W                throughput: in-flight window, messages not yet received
                            by every receiver (default 64)
  --rate R                  latency: messages per second (default 50)
  --body-size B             body length in characters (default 80)
  --ref-frame-bytes F       ref: broadcast payload padded to F bytes (default 300)
  --sample-every K          throughput: every K-th receiver measures latency (default 20)
  --connect-concurrency C   connections opened at once (default 100)
  --connect-timeout S       per connection, open + first frame (default 15)
  --stall-timeout S         no progress for S seconds fails the run (default 10)
  --drain-timeout S         wait for outstanding deliveries after sending (default 10)
  --timeout S               hard overall limit (default: computed)
  --server-pid PID          report that process's CPU use over the measured window
  --coalesce-ms M           throughput: block M ms per event-loop turn so reads batch
                            more frames; a headroom check: if deliveries/s does not
                            drop while the generator's CPU use does, the generator
                            was not the bottleneck (default 0, off)
  --transport ws|sse        hubbub receivers on WebSocket or on the HTTP stream (/sse);
                            the sender stays on WebSocket (default ws)
  --client raw|ws           WebSocket client for all connections: raw (rawws.js, the
                            default, cheapest per frame) or ws (the ws library)
`;

function parseArgs(argv) {
  const opts = { ...DEFAULTS };
  const given = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stderr.write(HELP);
      process.exit(0);
    }
    if (!a.startsWith('--')) usage(`unexpected argument: ${a}`);
    let key = a.slice(2);
    let val;
    const eq = key.indexOf('=');
    if (eq >= 0) {
      val = key.slice(eq + 1);
      key = key.slice(0, eq);
    } else {
      if (i + 1 >= argv.length) usage(`missing value for --${key}`);
      val = argv[++i];
    }
    given[key] = val;
  }
  if (given.config !== undefined) {
    let cfg;
    try {
      cfg = JSON.parse(fs.readFileSync(given.config, 'utf8'));
    } catch (e) {
      usage(`cannot read config ${given.config}: ${e.message}`);
    }
    for (const [k, v] of Object.entries(cfg)) {
      const key = k.replace(/_/g, '-');
      if (!(key in DEFAULTS)) usage(`unknown config key: ${k}`);
      opts[key] = v;
    }
    delete given.config;
  }
  for (const [k, v] of Object.entries(given)) {
    if (!(k in DEFAULTS)) usage(`unknown option: --${k}`);
    opts[k] = v;
  }
  for (const k of Object.keys(DEFAULTS)) {
    if (typeof DEFAULTS[k] === 'number') {
      const n = Number(opts[k]);
      if (!Number.isFinite(n) || n < 0) usage(`--${k} must be a non-negative number`);
      opts[k] = n;
    } else {
      opts[k] = String(opts[k]);
    }
  }
  if (opts.target !== 'hubbub' && opts.target !== 'ref') usage('--target must be hubbub or ref');
  if (opts.client !== 'raw' && opts.client !== 'ws') usage('--client must be raw or ws');
  if (opts.mode !== 'throughput' && opts.mode !== 'latency') usage('--mode must be throughput or latency');
  if (!opts.url) usage('--url is required');
  if (opts.duration <= 0) usage('--duration must be > 0');
  if (opts.window < 1) usage('--window must be >= 1');
  if (opts.rate <= 0) usage('--rate must be > 0');
  if (opts['sample-every'] < 1) usage('--sample-every must be >= 1');
  if (opts['connect-concurrency'] < 1) usage('--connect-concurrency must be >= 1');
  opts.window = Math.floor(opts.window);
  opts['body-size'] = Math.max(16, Math.floor(opts['body-size']));
  return opts;
}

function usage(msg) {
  process.stderr.write(`loadgen: ${msg}\n\n${HELP}`);
  process.exit(2);
}

const opt = parseArgs(process.argv.slice(2));
const TARGET = opt.target;
const MODE = opt.mode;
const IS_HUBBUB = TARGET === 'hubbub';
const CLIENT = opt.client;

let tokens = null;
let N;
if (IS_HUBBUB) {
  if (!opt.tokens) usage('--tokens is required for --target hubbub');
  if (!opt.conversation) usage('--conversation is required for --target hubbub');
  try {
    const raw = JSON.parse(fs.readFileSync(opt.tokens, 'utf8'));
    tokens = Array.isArray(raw) ? raw : raw.tokens;
  } catch (e) {
    usage(`cannot read tokens ${opt.tokens}: ${e.message}`);
  }
  if (!Array.isArray(tokens) || tokens.length === 0) usage('tokens file holds no tokens');
  N = opt.receivers > 0 ? Math.floor(opt.receivers) : tokens.length;
  if (N > tokens.length) usage(`--receivers ${N} but only ${tokens.length} tokens`);
} else {
  N = Math.floor(opt.receivers);
  if (N < 1) usage('--receivers is required for --target ref');
}

const CONV = IS_HUBBUB ? opt.conversation : '01JREFERENCEC0NVERSAT10N00';
const CONV_JSON = JSON.stringify(CONV);
const BODY_SIZE = opt['body-size'];
const WINDOW = opt.window;
const SAMPLE_EVERY = Math.floor(opt['sample-every']);
const RUN_TAG = randomBytes(4).toString('hex');
const TIMEOUT_S =
  opt.timeout > 0
    ? opt.timeout
    : 30 + opt['connect-timeout'] + N / 50 + opt.warmup + opt.duration + opt['drain-timeout'];

function log(msg) {
  process.stderr.write(`loadgen[${TARGET}/${MODE}] ${msg}\n`);
}

// ------------------------------------------------------------------ state --

const PHASE_CONNECT = 0;
const PHASE_WARMUP = 1;
const PHASE_MEASURE = 2;
const PHASE_DRAIN = 3;
const PHASE_DONE = 4;
let phase = PHASE_CONNECT;

const conns = new Array(N);
let sender = null;
let sent = 0; // messages sent
let sending = false;
let totalDelivered = 0; // message.new frames counted over all receivers
let minAll = 0; // messages received by every receiver (throughput mode)
let lastProgressAt = 0;
let lastProgressValue = -1;
let closedEarly = 0;
let badFrames = 0;
let wrongConversation = 0;
let acks = 0;
const otherFrames = Object.create(null);
// Frames other than deliveries and acks (hubbub: presence, when all members
// connect at once each is announced to the others): when the last one came,
// and how many came while measuring, when the server had other work too.
let connectStartT = 0;
let lastOtherT = 0;
let otherMeasured = 0;
const serverErrors = [];
let frameBytesMin = Infinity;
let frameBytesMax = 0;
let measureStartT = Infinity; // performance.now() when measuring started
let measureEndT = Infinity;
let sentAtMeasureStart = 0;
let sentAtMeasureEnd = 0;
let deliveredAtMeasureStart = 0;
let deliveredAtMeasureEnd = 0;
let measuredDeliveries = 0; // latency mode: deliveries of messages sent while measuring
const lat = { buf: new Float64Array(1 << 16), n: 0 };

function pushLatency(v) {
  if (lat.n === lat.buf.length) {
    const nb = new Float64Array(lat.buf.length * 2);
    nb.set(lat.buf);
    lat.buf = nb;
  }
  lat.buf[lat.n++] = v;
}

// In-flight accounting (throughput mode): ring[c % RING] = receivers whose
// (c+1)-th delivery has arrived. A receiver's count only grows by one, so the
// slot for message minAll reaches N exactly when every receiver has it.
const RING = WINDOW * 2 + 2;
const ring = new Uint32Array(RING);
let ringOverflow = 0;

// --------------------------------------------------------------- payloads --

const PAD = 'x'.repeat(Math.max(BODY_SIZE, opt['ref-frame-bytes']) + 64);

function makeBody(now) {
  const head = `t=${now.toFixed(3)};`;
  return head + PAD.slice(0, Math.max(0, BODY_SIZE - head.length));
}

function hubbubSendFrame(n, now) {
  return (
    `{"type":"message.send","id":${n},"conversation_id":${CONV_JSON},` +
    `"client_msg_id":"bench-${RUN_TAG}-${n}","body":"${makeBody(now)}"}`
  );
}

// Shaped like hubbub's message.new delivery, padded to --ref-frame-bytes.
const REF_FRAME_BYTES = Math.floor(opt['ref-frame-bytes']);
function refFrame(n, now) {
  const body = makeBody(now);
  const pre =
    `{"type":"message.new","message":{"id":"${String(n).padStart(26, '0')}",` +
    `"conversation_id":${CONV_JSON},"seq":${n + 1},"sender_id":"u0000","body":"`;
  const post =
    `","created_at":"2025-01-01T00:00:00.000000Z","client_msg_id":"bench-${RUN_TAG}-${n}"}}`;
  const extra = REF_FRAME_BYTES - pre.length - post.length - body.length;
  return pre + body + (extra > 0 ? PAD.slice(0, extra) : '') + post;
}

function sendOne() {
  const n = sent++;
  const now = performance.now();
  sender.ws.send(IS_HUBBUB ? hubbubSendFrame(n, now) : refFrame(n, now));
}

// ---------------------------------------------------------- frame handling --

const DELIVERY_PREFIX = Buffer.from('{"type":"message.new"');
const DELIVERY_PREFIX_SP = Buffer.from('{"type": "message.new"');
const ACK_PREFIX = Buffer.from('{"type":"ack"');
const TS_MARK = Buffer.from('"t=');

function startsWith(buf, prefix) {
  return buf.length >= prefix.length && buf.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}

function isDelivery(buf) {
  return startsWith(buf, DELIVERY_PREFIX) || startsWith(buf, DELIVERY_PREFIX_SP);
}

// Timestamp from the body without parsing the JSON: the body starts with "t=".
function stampOf(buf) {
  const i = buf.indexOf(TS_MARK);
  if (i < 0) return NaN;
  const j = buf.indexOf(59 /* ; */, i + 3);
  if (j < 0) return NaN;
  return Number(buf.toString('latin1', i + 3, j));
}

function noteFrameSize(len) {
  if (len < frameBytesMin) frameBytesMin = len;
  if (len > frameBytesMax) frameBytesMax = len;
}

// A sampled receiver's full check of a delivery frame.
function checkDelivery(buf) {
  let obj;
  try {
    obj = JSON.parse(buf);
  } catch (e) {
    return false;
  }
  const m = obj && obj.type === 'message.new' ? obj.message : null;
  const body = m && m.body;
  if (typeof body !== 'string' || body.charCodeAt(0) !== 116 /* t */ || body.charCodeAt(1) !== 61 /* = */) {
    return false;
  }
  if (m.conversation_id !== CONV) wrongConversation++;
  return true;
}

// Rare frames (acks, errors, presence, ...): parse and tally by type.
function otherFrame(conn, buf) {
  if (conn.i === 0 && startsWith(buf, ACK_PREFIX)) {
    acks++;
    return;
  }
  let obj;
  try {
    obj = JSON.parse(buf);
  } catch (e) {
    badFrames++;
    return;
  }
  const type = obj && typeof obj.type === 'string' ? obj.type : '?';
  if (type === 'ack' && conn.i === 0) {
    acks++;
    return;
  }
  otherFrames[type] = (otherFrames[type] || 0) + 1;
  lastOtherT = performance.now();
  if (phase === PHASE_MEASURE) otherMeasured++;
  if (type === 'error') {
    // Any error frame (rejected send, rate limit, ...) invalidates the run.
    const s = buf.toString('utf8', 0, Math.min(buf.length, 300));
    if (serverErrors.length < 5) serverErrors.push(s);
    if (phase > PHASE_CONNECT && phase < PHASE_DONE) finish(`server error frame on connection ${conn.i}: ${s}`);
  }
}

function advance() {
  let s = minAll % RING;
  while (ring[s] >= N) {
    ring[s] = 0;
    minAll++;
    s = minAll % RING;
  }
  if (sending) {
    while (sent - minAll < WINDOW) sendOne();
  }
}

function countThroughput(conn, buf) {
  const c = conn.count++;
  totalDelivered++;
  if (conn.sampled) {
    noteFrameSize(buf.length);
    const t = stampOf(buf);
    if (t >= measureStartT) pushLatency(performance.now() - t);
    else if (t !== t) badFrames++;
  }
  const d = c - minAll;
  if (d >= 0 && d < RING) {
    const s = c % RING;
    if (++ring[s] >= N && d === 0) advance();
  } else {
    ringOverflow++;
  }
}

function onThroughputFrameHubbub(buf) {
  if (isDelivery(buf)) countThroughput(this, buf);
  else otherFrame(this, buf);
}

function onThroughputFrameRef(buf) {
  countThroughput(this, buf);
}

// Latency mode: every receiver takes the timestamp of every frame by byte
// search (as sampled receivers do in throughput mode); the sampled receivers
// also parse the whole frame and check it. Parsing every frame would make the
// generator, not the server, set the pace of the last deliveries.
function onLatencyFrame(buf) {
  const now = performance.now();
  if (IS_HUBBUB && !isDelivery(buf)) {
    otherFrame(this, buf);
    return;
  }
  if (this.sampled && !checkDelivery(buf)) {
    badFrames++;
    return;
  }
  const t = stampOf(buf);
  if (t !== t) {
    badFrames++;
    return;
  }
  this.count++;
  totalDelivered++;
  if (this.sampled) noteFrameSize(buf.length);
  if (t >= measureStartT) {
    measuredDeliveries++;
    pushLatency(now - t);
  }
}

// ------------------------------------------------------------- connecting --

function connUrl(i) {
  if (!IS_HUBBUB) return opt.url;
  const sep = opt.url.includes('?') ? '&' : '?';
  return `${opt.url}${sep}token=${encodeURIComponent(tokens[i])}`;
}

function sseUrl(i) {
  const base = opt.url.replace(/^ws/, 'http').replace(/\/ws(\?.*)?$/, '/sse');
  return `${base}?token=${encodeURIComponent(tokens[i])}`;
}

function openConn(i) {
  return new Promise((resolve, reject) => {
    const timeoutMs = opt['connect-timeout'] * 1000;
    const conn = { i, ws: null, count: 0, sampled: i % SAMPLE_EVERY === 0 || i === N - 1, ready: false };
    let settled = false;
    const timer = setTimeout(() => fail(new Error('not ready in time')), timeoutMs);
    function fail(err) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (conn.ws) conn.ws.terminate();
      reject(new Error(`connection ${i}: ${err.message}`));
    }
    function onClose(code, reason) {
      if (!settled) {
        fail(new Error(`closed before ready (code ${code} ${reason})`));
      } else if (phase < PHASE_DONE) {
        closedEarly++;
        if (closedEarly <= 5) log(`connection ${i} closed during the run (code ${code} ${reason})`);
      }
    }
    // hubbub: ready once the first frame, {"type":"hello",...}, has arrived.
    function onFirstFrame(buf) {
      let obj = null;
      try {
        obj = JSON.parse(buf);
      } catch (e) {
        /* reported below */
      }
      if (obj && obj.type === 'hello') ready();
      else fail(new Error(`first frame is not hello: ${String(buf).slice(0, 200)}`));
    }
    const handler = handlerFor().bind(conn);
    let ready;
    try {
      const overSse = IS_HUBBUB && opt.transport === 'sse' && i > 0;
      if (CLIENT === 'raw' || overSse) {
        const ws = overSse ? new SseClient(sseUrl(i)) : new RawWebSocket(connUrl(i));
        conn.ws = ws;
        ready = () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          conn.ready = true;
          ws.onmessage = handler;
          resolve(conn);
        };
        ws.onerror = (err) => fail(err);
        ws.onclose = onClose;
        if (IS_HUBBUB) ws.onmessage = onFirstFrame;
        else ws.onopen = ready;
      } else {
        const ws = new WebSocket(connUrl(i), {
          perMessageDeflate: false,
          skipUTF8Validation: true,
          handshakeTimeout: timeoutMs,
        });
        conn.ws = ws;
        ready = () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          conn.ready = true;
          ws.on('message', handler);
          resolve(conn);
        };
        ws.on('error', (err) => fail(err));
        ws.on('unexpected-response', (req, res) => fail(new Error(`HTTP ${res.statusCode} on upgrade`)));
        ws.on('close', (code, reason) => onClose(code, String(reason)));
        if (IS_HUBBUB) ws.once('message', onFirstFrame);
        else ws.on('open', ready);
      }
    } catch (e) {
      fail(e);
    }
  });
}

function handlerFor() {
  if (MODE === 'latency') return onLatencyFrame;
  return IS_HUBBUB ? onThroughputFrameHubbub : onThroughputFrameRef;
}

async function connectAll() {
  let next = 0;
  const C = Math.min(N, Math.floor(opt['connect-concurrency']));
  async function worker() {
    while (next < N) {
      const i = next++;
      conns[i] = await openConn(i);
    }
  }
  await Promise.all(Array.from({ length: C }, worker));
}

// ----------------------------------------------------------------- result --

function readProcCpuSeconds(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch (e) {
    return NaN;
  }
}
function readProcRssKb(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch (e) {
    return NaN;
  }
}
let CLK_TCK = 100;
if (opt['server-pid'] > 0) {
  try {
    CLK_TCK = Number(require('child_process').execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch (e) {
    CLK_TCK = 100;
  }
}

function percentile(sorted, n, q) {
  if (n === 0) return null;
  const k = Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1));
  return round3(sorted[k]);
}

function round3(x) {
  return Math.round(x * 1000) / 1000;
}

function latencySummary() {
  const n = lat.n;
  const sorted = lat.buf.slice(0, n).sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i];
  return {
    samples: n,
    p50: percentile(sorted, n, 0.5),
    p90: percentile(sorted, n, 0.9),
    p99: percentile(sorted, n, 0.99),
    max: n ? round3(sorted[n - 1]) : null,
    mean: n ? round3(sum / n) : null,
  };
}

const t0 = performance.now();
const result = {
  ok: false,
  error: null,
  target: TARGET,
  mode: MODE,
  url: opt.url,
  receivers: N,
  conversation_id: IS_HUBBUB ? CONV : null,
  warmup_s: opt.warmup,
  duration_s: null,
  window: MODE === 'throughput' ? WINDOW : null,
  rate: MODE === 'latency' ? opt.rate : null,
  body_bytes: BODY_SIZE,
  client: CLIENT,
  coalesce_ms: MODE === 'throughput' ? opt['coalesce-ms'] : null,
};
let measure = {};
let finished = false;

function finish(error) {
  if (finished) return;
  finished = true;
  phase = PHASE_DONE;
  sending = false;
  result.error = error || null;
  result.ok = !error;
  const measuredS = Number.isFinite(measureEndT - measureStartT) ? (measureEndT - measureStartT) / 1000 : null;
  result.duration_s = measuredS === null ? null : round3(measuredS);
  result.messages_sent = sent;
  result.frame_bytes = Number.isFinite(frameBytesMin) ? frameBytesMin : null;
  result.frame_bytes_max = frameBytesMax || null;
  if (MODE === 'throughput') {
    const deliveries = deliveredAtMeasureEnd - deliveredAtMeasureStart;
    const expected = sent * N;
    result.deliveries = deliveries;
    result.deliveries_per_sec = measuredS ? Math.round(deliveries / measuredS) : null;
    result.messages_per_sec = measuredS ? round3(deliveries / N / measuredS) : null;
    result.expected_deliveries_total = expected;
    result.received_deliveries_total = totalDelivered;
    result.lost = Math.max(0, expected - totalDelivered);
    result.latency_sampled_receivers = conns.filter((c) => c && c.sampled).length;
  } else {
    const sentMeasured = sentAtMeasureEnd - sentAtMeasureStart;
    const expected = sentMeasured * N;
    result.messages_per_sec = measuredS ? round3(sentMeasured / measuredS) : null;
    result.deliveries_per_sec = measuredS ? Math.round(expected / measuredS) : null;
    result.messages_measured = sentMeasured;
    result.expected_deliveries = expected;
    result.received_deliveries = measuredDeliveries;
    result.lost = Math.max(0, expected - measuredDeliveries);
  }
  result.latency_ms = latencySummary();
  result.acks = IS_HUBBUB ? acks : null;
  result.other_frames = otherFrames;
  result.other_frames_measured = otherMeasured;
  result.measure_start_s = measureStartT < Infinity ? round3((measureStartT - connectStartT) / 1000) : null;
  result.other_frames_last_s = lastOtherT ? round3((lastOtherT - connectStartT) / 1000) : null;
  result.server_errors = serverErrors;
  result.bad_frames = badFrames;
  result.wrong_conversation = wrongConversation;
  result.ring_overflow = ringOverflow;
  result.closed_during_run = closedEarly;
  result.loadgen = measure.loadgen || null;
  result.server = measure.server || null;
  result.connect_s = measure.connectS === undefined ? null : measure.connectS;
  result.elapsed_s = round3((performance.now() - t0) / 1000);
  if (!error) {
    const problems = [];
    if (result.lost > 0) problems.push(`${result.lost} deliveries missing`);
    if (closedEarly > 0) problems.push(`${closedEarly} connections closed during the run`);
    if (badFrames > 0) problems.push(`${badFrames} unparseable frames`);
    if (wrongConversation > 0) problems.push(`${wrongConversation} deliveries for another conversation`);
    if (serverErrors.length > 0) problems.push('server sent error frames');
    if (problems.length) {
      result.ok = false;
      result.error = problems.join('; ');
    }
  }
  if (result.error) log(`FAILED: ${result.error}`);
  for (const c of conns) if (c) c.ws.terminate();
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(result.ok ? 0 : 1));
  setTimeout(() => process.exit(result.ok ? 0 : 1), 2000).unref();
}

const hardTimer = setTimeout(() => finish(`hard timeout after ${TIMEOUT_S} s`), TIMEOUT_S * 1000);
hardTimer.unref();

// -------------------------------------------------------------------- run --

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function progressValue() {
  return MODE === 'throughput' ? minAll : totalDelivered;
}

// Fails the run if nothing progresses while something is outstanding.
function startWatchdog() {
  lastProgressAt = performance.now();
  const iv = setInterval(() => {
    if (finished) return clearInterval(iv);
    const v = progressValue();
    const now = performance.now();
    const outstanding = MODE === 'throughput' ? sent > minAll : totalDelivered < sent * N;
    if (v !== lastProgressValue || !outstanding) {
      lastProgressValue = v;
      lastProgressAt = now;
      return;
    }
    if (now - lastProgressAt > opt['stall-timeout'] * 1000) {
      let behind = 0;
      let lowest = Infinity;
      for (const c of conns) {
        if (c.count < sent) behind++;
        if (c.count < lowest) lowest = c.count;
      }
      clearInterval(iv);
      finish(
        `stalled: no progress for ${opt['stall-timeout']} s; sent ${sent}, ` +
          `${behind} receivers behind, lowest count ${lowest}`,
      );
    }
  }, 250);
  iv.unref();
}

function snapshotStart() {
  measure.cpu0 = process.cpuUsage();
  measure.elu0 = performance.eventLoopUtilization();
  if (opt['server-pid'] > 0) measure.srv0 = readProcCpuSeconds(opt['server-pid']);
  measureStartT = performance.now();
  sentAtMeasureStart = sent;
  deliveredAtMeasureStart = totalDelivered;
}

function snapshotEnd() {
  measureEndT = performance.now();
  sentAtMeasureEnd = sent;
  deliveredAtMeasureEnd = totalDelivered;
  const wallS = (measureEndT - measureStartT) / 1000;
  const cpu = process.cpuUsage(measure.cpu0);
  const elu = performance.eventLoopUtilization(measure.elu0);
  measure.loadgen = {
    cpu_util: round3((cpu.user + cpu.system) / 1e6 / wallS),
    event_loop_util: round3(elu.utilization),
  };
  if (opt['server-pid'] > 0) {
    const srv1 = readProcCpuSeconds(opt['server-pid']);
    measure.server = {
      pid: opt['server-pid'],
      cpu_util: round3((srv1 - measure.srv0) / wallS),
      rss_kb: readProcRssKb(opt['server-pid']),
      rss_before_kb: measure.rssBeforeKb,
    };
  }
}

async function waitUntil(pred, timeoutMs) {
  const end = performance.now() + timeoutMs;
  while (!pred() && performance.now() < end && !finished) await sleep(20);
  return pred();
}

function startCoalescing() {
  const ms = opt['coalesce-ms'];
  if (!(ms > 0)) return;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  (function pause() {
    if (finished) return;
    Atomics.wait(cell, 0, 0, ms);
    setImmediate(pause);
  })();
}

async function runThroughput() {
  phase = PHASE_WARMUP;
  sending = true;
  startWatchdog();
  startCoalescing();
  advance(); // fills the window
  await sleep(opt.warmup * 1000);
  if (finished) return;
  phase = PHASE_MEASURE;
  snapshotStart();
  await sleep(opt.duration * 1000);
  if (finished) return;
  snapshotEnd();
  sending = false;
  phase = PHASE_DRAIN;
  await waitUntil(() => minAll >= sent, opt['drain-timeout'] * 1000);
  await sleep(100); // let stray extra frames show up as ring overflow
  finish(null);
}

async function runLatency() {
  phase = PHASE_WARMUP;
  sending = true;
  startWatchdog();
  const interval = 1000 / opt.rate;
  const start = performance.now();
  let measureAt = start + opt.warmup * 1000;
  const stopAt = measureAt + opt.duration * 1000;
  await new Promise((resolve) => {
    function tick() {
      if (finished) return resolve();
      const now = performance.now();
      if (phase === PHASE_WARMUP && now >= measureAt) {
        phase = PHASE_MEASURE;
        snapshotStart();
      }
      if (now >= stopAt) {
        snapshotEnd();
        return resolve();
      }
      const due = Math.floor((now - start) / interval) + 1;
      while (sent < due) sendOne();
      setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    }
    tick();
  });
  if (finished) return;
  sending = false;
  phase = PHASE_DRAIN;
  const expected = () => (sentAtMeasureEnd - sentAtMeasureStart) * N;
  await waitUntil(() => measuredDeliveries >= expected() && totalDelivered >= sent * N, opt['drain-timeout'] * 1000);
  await sleep(100);
  finish(null);
}

async function main() {
  log(`connecting ${N} receivers to ${opt.url}`);
  // The server's resident memory before any connection, so that the end
  // figure can be read per connection.
  if (opt['server-pid'] > 0) measure.rssBeforeKb = readProcRssKb(opt['server-pid']);
  const tc = performance.now();
  connectStartT = tc;
  try {
    await connectAll();
  } catch (e) {
    finish(`connect failed: ${e.message}`);
    return;
  }
  measure.connectS = round3((performance.now() - tc) / 1000);
  sender = conns[0];
  log(`${N} connections ready in ${measure.connectS} s`);
  if (MODE === 'throughput') await runThroughput();
  else await runLatency();
}

main().catch((e) => finish(`internal error: ${e && e.stack ? e.stack : e}`));
