'use strict';
// Minimal RFC 6455 WebSocket client used by the load generator's receivers.
//
// It exists to keep the generator cheap per delivered frame: reads go into one
// preallocated buffer shared by all sockets (net's `onread` option, no stream
// machinery, no per-read allocation), frames are delimited by their headers
// only, and each complete text/binary message is handed to `onmessage` as a
// zero-copy view that is valid only during the call. Handles ping (answers
// pong), close, fragmented messages and partial frames across reads. Client
// frames are masked as the protocol requires. No extensions are offered, so
// the connection never uses compression. ws:// only.

const net = require('net');
const crypto = require('crypto');

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const SHARED_READ_BUFFER = Buffer.allocUnsafe(256 * 1024);
const MAX_MESSAGE = 16 * 1024 * 1024;
const HEADER_END = Buffer.from('\r\n\r\n');

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;

class RawWebSocket {
  // Handlers: onopen(), onmessage(buf), onerror(err), onclose(code, reason).
  // options.localAddress: the source address to connect from (default: any).
  constructor(url, options = {}) {
    const u = new URL(url);
    if (u.protocol !== 'ws:') throw new Error(`unsupported scheme ${u.protocol}`);
    this.host = u.hostname.replace(/^\[|\]$/g, '');
    this.port = Number(u.port || 80);
    this.path = (u.pathname || '/') + (u.search || '');
    this.hostHeader = u.host;
    this.state = CONNECTING;
    this.pending = null; // unconsumed bytes (copied out of the shared buffer)
    this.frags = null; // fragments of an unfinished message
    this.key = crypto.randomBytes(16).toString('base64');
    this.onopen = null;
    this.onmessage = null;
    this.onerror = null;
    this.onclose = null;
    this.closeCode = 1006;
    this.closeReason = '';
    this._closedEmitted = false;

    this.socket = net.connect({
      host: this.host,
      port: this.port,
      localAddress: options.localAddress,
      onread: { buffer: SHARED_READ_BUFFER, callback: (n, buf) => this._onread(buf, n) },
    });
    this.socket.setNoDelay(true);
    this.socket.on('connect', () => {
      this.socket.write(
        `GET ${this.path} HTTP/1.1\r\n` +
          `Host: ${this.hostHeader}\r\n` +
          'Upgrade: websocket\r\n' +
          'Connection: Upgrade\r\n' +
          `Sec-WebSocket-Key: ${this.key}\r\n` +
          'Sec-WebSocket-Version: 13\r\n\r\n',
      );
    });
    this.socket.on('error', (err) => this._fail(err));
    this.socket.on('close', () => this._emitClose());
  }

  get readyState() {
    return this.state;
  }

  send(str) {
    if (this.state !== OPEN) throw new Error('socket not open');
    this._sendFrame(0x81, Buffer.from(str));
  }

  terminate() {
    this.state = CLOSED;
    this.socket.destroy();
  }

  // ------------------------------------------------------------- internal --

  _fail(err) {
    const wasClosed = this.state === CLOSED;
    this.state = CLOSED;
    this.socket.destroy();
    if (!wasClosed && this.onerror) this.onerror(err);
  }

  _emitClose() {
    this.state = CLOSED;
    if (this._closedEmitted) return;
    this._closedEmitted = true;
    if (this.onclose) this.onclose(this.closeCode, this.closeReason);
  }

  _sendFrame(firstByte, payload) {
    const len = payload.length;
    const hlen = len < 126 ? 2 : len < 65536 ? 4 : 10;
    const f = Buffer.allocUnsafe(hlen + 4 + len);
    f[0] = firstByte;
    if (len < 126) {
      f[1] = 0x80 | len;
    } else if (len < 65536) {
      f[1] = 0x80 | 126;
      f.writeUInt16BE(len, 2);
    } else {
      f[1] = 0x80 | 127;
      f.writeUInt32BE(Math.floor(len / 4294967296), 2);
      f.writeUInt32BE(len >>> 0, 6);
    }
    crypto.randomFillSync(f, hlen, 4);
    const m = hlen;
    const p = hlen + 4;
    for (let i = 0; i < len; i++) f[p + i] = payload[i] ^ f[m + (i & 3)];
    this.socket.write(f);
  }

  _onread(shared, n) {
    if (this.state === CLOSED) return;
    let buf;
    let end;
    if (this.pending !== null) {
      buf = Buffer.concat([this.pending, shared.subarray(0, n)]);
      end = buf.length;
      this.pending = null;
    } else {
      buf = shared;
      end = n;
    }
    let off = 0;
    if (this.state === CONNECTING) {
      off = this._handshake(buf, end);
      if (off < 0) return; // failed, or headers incomplete (kept in pending)
    }
    off = this._frames(buf, off, end);
    if (off < end && this.state !== CLOSED) {
      if (end - off > MAX_MESSAGE + 14) return this._fail(new Error('frame too large'));
      this.pending = Buffer.from(buf.subarray(off, end)); // copy: the shared buffer is reused
    }
  }

  _handshake(buf, end) {
    const h = buf.subarray(0, end).indexOf(HEADER_END);
    if (h < 0) {
      if (end > 16384) this._fail(new Error('handshake response too large'));
      else this.pending = Buffer.from(buf.subarray(0, end));
      return -1;
    }
    const head = buf.toString('latin1', 0, h);
    const lines = head.split('\r\n');
    const status = lines[0];
    if (!/^HTTP\/1\.[01] 101 /.test(status + ' ')) {
      this._fail(new Error(`unexpected response: ${status}`));
      return -1;
    }
    const want = crypto.createHash('sha1').update(this.key + GUID).digest('base64');
    let accept = null;
    let ext = null;
    for (let i = 1; i < lines.length; i++) {
      const c = lines[i].indexOf(':');
      if (c < 0) continue;
      const name = lines[i].slice(0, c).trim().toLowerCase();
      if (name === 'sec-websocket-accept') accept = lines[i].slice(c + 1).trim();
      else if (name === 'sec-websocket-extensions') ext = lines[i].slice(c + 1).trim();
    }
    if (accept !== want) {
      this._fail(new Error('bad Sec-WebSocket-Accept'));
      return -1;
    }
    if (ext) {
      this._fail(new Error(`server selected an extension that was not offered: ${ext}`));
      return -1;
    }
    this.state = OPEN;
    if (this.onopen) this.onopen();
    return h + 4;
  }

  // Consumes every complete frame in buf[off, end); returns where it stopped.
  _frames(buf, off, end) {
    while (end - off >= 2 && this.state === OPEN) {
      const b0 = buf[off];
      const b1 = buf[off + 1];
      let len = b1 & 0x7f;
      let p = off + 2;
      if (len === 126) {
        if (end - off < 4) break;
        len = (buf[off + 2] << 8) | buf[off + 3];
        p = off + 4;
      } else if (len === 127) {
        if (end - off < 10) break;
        len = buf.readUInt32BE(off + 2) * 4294967296 + buf.readUInt32BE(off + 6);
        p = off + 10;
      }
      if (len > MAX_MESSAGE) {
        this._fail(new Error('frame too large'));
        return end;
      }
      let maskAt = -1;
      if (b1 & 0x80) {
        // Servers must not mask; tolerate it anyway.
        if (end - p < 4) break;
        maskAt = p;
        p += 4;
      }
      if (end - p < len) break;
      const q = p + len;
      if (maskAt >= 0) {
        for (let i = 0; i < len; i++) buf[p + i] ^= buf[maskAt + (i & 3)];
      }
      this._frame(b0, buf, p, q);
      off = q;
    }
    return off;
  }

  _frame(b0, buf, p, q) {
    const op = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    if (op === 1 || op === 2) {
      if (this.frags !== null) return this._fail(new Error('new message inside a fragmented one'));
      if (fin) {
        this.onmessage(buf.subarray(p, q));
      } else {
        this.frags = [Buffer.from(buf.subarray(p, q))];
      }
    } else if (op === 0) {
      if (this.frags === null) return this._fail(new Error('continuation without a message'));
      this.frags.push(Buffer.from(buf.subarray(p, q)));
      if (fin) {
        const m = Buffer.concat(this.frags);
        this.frags = null;
        this.onmessage(m);
      }
    } else if (op === 9) {
      this._sendFrame(0x8a, Buffer.from(buf.subarray(p, q)));
    } else if (op === 10) {
      // pong: nothing to do
    } else if (op === 8) {
      this.closeCode = q - p >= 2 ? (buf[p] << 8) | buf[p + 1] : 1005;
      this.closeReason = q - p > 2 ? buf.toString('utf8', p + 2, q) : '';
      const echo = Buffer.allocUnsafe(2);
      echo.writeUInt16BE(this.closeCode === 1005 ? 1000 : this.closeCode, 0);
      try {
        this._sendFrame(0x88, echo);
      } catch (e) {
        /* socket already gone */
      }
      this.state = CLOSED;
      this.socket.end();
    } else {
      this._fail(new Error(`unknown opcode ${op}`));
    }
  }
}

RawWebSocket.CONNECTING = CONNECTING;
RawWebSocket.OPEN = OPEN;
RawWebSocket.CLOSED = CLOSED;

module.exports = { RawWebSocket };
