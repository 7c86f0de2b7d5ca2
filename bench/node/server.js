// Node socket.io baseline server for the peerroom benchmark (issue 7).
//
// Measures nothing itself; it is a baseline target with the same rooms and
// events the load generator drives on peerroom: POST /api/rooms hands out an
// invite token; a socket.io connection with auth {token, name} joins that room
// (names unique per room) and gets `welcome`; `chat.send` and `hand.raise` are
// acked and broadcast to the room (sender included) with a per-room seq.
// No persistence, rate limits or roles.
//
// Run: node bench/node/server.js --port 8766 [--wire msgpack]
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const { Server } = require('socket.io');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const host = arg('--host', '127.0.0.1');
const port = Number(arg('--port', '8766'));
const wire = arg('--wire', 'json');
if (!['127.0.0.1', 'localhost', '::1'].includes(host)) {
  console.error('loopback only');
  process.exit(2);
}

const rooms = new Map(); // room id -> {id, title, members: Map(id -> info), hands: [], seq}
const byToken = new Map();
let nextPid = 1;
let nextMsg = 1;

function readBody(req) {
  return new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => resolve(data));
  });
}

const httpServer = http.createServer(async (req, res) => {
  if (req.method === 'POST' && req.url === '/api/rooms') {
    let body = {};
    try { body = JSON.parse((await readBody(req)) || '{}'); } catch (e) { body = {}; }
    const id = `r${rooms.size + 1}`;
    const token = crypto.randomBytes(12).toString('base64url');
    const room = { id, title: String(body.title || id), members: new Map(), hands: [], seq: 0 };
    rooms.set(id, room);
    byToken.set(token, room);
    res.writeHead(201, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ room_id: id, invite_token: token, facilitator_token: token }));
    return;
  }
  if (req.method === 'GET' && req.url === '/healthz') {
    res.writeHead(200);
    res.end('ok');
    return;
  }
  if (!req.url.startsWith('/socket.io/')) {
    res.writeHead(404);
    res.end();
  }
});

const opts = { transports: ['websocket'], serveClient: false, pingInterval: 25000, pingTimeout: 20000 };
if (wire === 'msgpack') {
  opts.parser = require('socket.io-msgpack-parser');
}
const io = new Server(httpServer, opts);

function broadcast(room, event, payload) {
  room.seq += 1;
  payload.seq = room.seq;
  io.to(room.id).emit(event, payload);
}

io.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  const room = byToken.get(String(auth.token || ''));
  const name = String(auth.name || '').trim();
  let err = null;
  if (!room) err = { code: 'bad_token', message: 'unknown token' };
  else if (name.length < 1 || name.length > 40) err = { code: 'name_invalid', message: 'bad name' };
  else {
    for (const m of room.members.values()) {
      if (m.name === name) { err = { code: 'name_taken', message: 'name taken' }; break; }
    }
  }
  if (err) {
    const e = new Error(err.message);
    e.data = err;
    next(e);
    return;
  }
  socket.data.room = room;
  socket.data.name = name;
  next();
});

io.on('connection', (socket) => {
  const room = socket.data.room;
  const info = { id: `p${nextPid++}`, name: socket.data.name, role: 'peer' };
  room.members.set(info.id, info);
  socket.join(room.id);
  socket.emit('welcome', {
    you: info,
    resume: '',
    room: {
      id: room.id, title: room.title, seq: room.seq,
      participants: Array.from(room.members.values()), hands: room.hands.slice(), floor: null,
    },
  });
  broadcast(room, 'participant.joined', { participant: info });

  socket.on('chat.send', (payload, ack) => {
    const msgId = `m${nextMsg++}`;
    const message = {
      id: msgId, from: info.id, name: info.name,
      text: String((payload && payload.text) || ''), ts: Date.now() / 1000,
    };
    if (typeof ack === 'function') ack({ ok: true, id: msgId });
    broadcast(room, 'chat', { message });
  });

  socket.on('hand.raise', (payload, ack) => {
    const changed = !room.hands.includes(info.id);
    if (changed) room.hands.push(info.id);
    if (typeof ack === 'function') ack({ ok: true });
    if (changed) broadcast(room, 'hands', { hands: room.hands.slice(), floor: null });
  });

  socket.on('disconnect', () => {
    room.members.delete(info.id);
    const i = room.hands.indexOf(info.id);
    if (i >= 0) room.hands.splice(i, 1);
    broadcast(room, 'participant.left', { id: info.id, reason: 'timeout' });
  });
});

httpServer.listen(port, host, () => {
  console.log(`node socket.io baseline on ${host}:${port} wire=${wire}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { io.close(); process.exit(0); });
}
