'use strict';
// A minimal client of hubbub's HTTP stream (GET /sse), shaped like rawws.js:
// onmessage(buf) gets each frame's JSON as a Buffer, onclose(code, reason)
// the close event's code (1006 when the response just ends), onerror(err).
const http = require('http');

const DATA = Buffer.from('data: ');
const EVENT_CLOSE = Buffer.from('event: close\n');

class SseClient {
  constructor(url) {
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    this.closed = false;
    this.buffer = Buffer.alloc(0);
    this.req = http.get(url, { agent: false, headers: { Accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) {
        this._error(new Error(`HTTP ${res.statusCode} on /sse`));
        res.resume();
        return;
      }
      res.on('data', (chunk) => this._data(chunk));
      res.on('end', () => this._close(1006, 'stream ended'));
      res.on('error', (err) => this._error(err));
    });
    this.req.on('error', (err) => this._error(err));
  }

  _data(chunk) {
    let buf = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    let start = 0;
    for (;;) {
      const end = buf.indexOf('\n\n', start);
      if (end < 0) break;
      const message = buf.subarray(start, end);
      start = end + 2;
      if (message[0] === 58 /* : a comment */) continue;
      if (message.subarray(0, EVENT_CLOSE.length).equals(EVENT_CLOSE)) {
        const data = JSON.parse(message.subarray(EVENT_CLOSE.length + DATA.length).toString());
        this._close(data.code, data.reason);
        continue;
      }
      if (this.onmessage && message.subarray(0, DATA.length).equals(DATA)) {
        this.onmessage(message.subarray(DATA.length));
      }
    }
    this.buffer = start < buf.length ? Buffer.from(buf.subarray(start)) : Buffer.alloc(0);
  }

  _close(code, reason) {
    if (this.closed) return;
    this.closed = true;
    if (this.onclose) this.onclose(code, reason);
  }

  _error(err) {
    if (this.closed) return;
    if (this.onerror) this.onerror(err);
  }

  terminate() {
    this.closed = true;
    this.req.destroy();
  }
}

module.exports = { SseClient };
